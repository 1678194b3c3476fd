"""The ``monitoring:`` section: windows, drift and performance policies, SLOs and delayed labels."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from steward._primitives import DurationText, check_duration
from steward.spec._base import _Strict

__all__ = ["LabelsSpec", "MonitorPolicySpec", "MonitorScheduleSpec", "MonitorWindowSpec", "MonitoringSpec", "SloSpec"]


class MonitorWindowSpec(_Strict):
    """How the prediction log is cut into windows: by time (``size: 1d``, ``6h``, ``30m``) or by row count."""

    by: Literal["time", "count"] = "time"
    size: str | int = "1d"

    @model_validator(mode="after")
    def _size_fits_by(self) -> MonitorWindowSpec:
        if self.by == "time":
            check_duration(self.size)
        elif isinstance(self.size, bool) or not str(self.size).strip().isdigit() or int(self.size) < 1:
            raise ValueError(f"size {self.size!r}: a count window's size is a whole number of rows, e.g. 1000")
        return self


class MonitorScheduleSpec(_Strict):
    """The monitor that runs inside ``steward serve``.

    Attributes:
        enabled: Evaluate the policies in the background while serving (``steward serve --no-monitor`` turns it off).
        interval_s: Seconds between passes. With several replicas, a metadata-store lock makes one of them evaluate
            each model per interval.
    """

    enabled: bool = True
    interval_s: float = Field(default=300.0, ge=1.0)


class MonitorPolicySpec(_Strict):
    """One detector paired with a threshold and an action.

    Attributes:
        detector: ``psi``, ``ks`` (p-value), ``ks_stat``, ``js``, ``kl``, ``wasserstein``, ``chi2`` (p-value),
            ``null_share``; for ``on: performance`` a metric name (``roc_auc``, ``accuracy``, ``brier``, ...);
            for ``on: slo`` an SLO name, or ``all``: one check per burn-rate alert of each SLO (column
            ``NAME:1h/5m`` for the fast burn, ``NAME:6h/30m`` for the slow one), its value the lower
            of the two windows' burn rates, breached exactly when that alert fires.
        on: What is checked: ``features``, ``prediction``, ``target``, ``performance`` or ``slo``.
        columns: Feature names, or ``all``.
        threshold: Breach level (for p-values and "higher is better" metrics: breach when below). For
            ``on: slo`` a multiplier of each alert's factor (14.4x fast, 6x slow): unset means 1,
            ``2`` acts only at twice those burn rates.
        warn: Warning level (same direction as ``threshold``); for ``on: slo`` a multiplier too
            (``0.5`` warns at half the factors).
        action: What to do on a breach.
        min_rows: Fewer window rows than this give ``insufficient_data``, never a breach.
        runbook: Runbook path, linked from alerts.
    """

    name: str
    detector: str = "psi"
    on: Literal["features", "prediction", "target", "performance", "slo"] = "features"
    columns: list[str] | Literal["all"] = "all"
    threshold: float = 0.2
    warn: float | None = None
    action: Literal["alert", "retrain", "rollback", "shadow-then-promote"] = "alert"
    min_rows: int = Field(default=500, ge=1)
    runbook: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_key(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare `on:` key as the boolean True
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data


class SloSpec(_Strict):
    """A service-level objective with an error budget.

    Attributes:
        sli: ``availability`` (share of non-error predictions), ``latency`` (share under ``threshold_ms``)
            or ``quality`` (share of labelled predictions correct at the 0.5 threshold, judged up to
            the label delay; with ``min_value``, the labelled window's ``metric`` is checked too).
        objective: Target share of good events, e.g. 0.999.
        metric: ``quality`` only: the metric ``min_value`` applies to (default ``roc_auc``).
        min_value: ``quality`` only: the level ``metric`` must not fall below (rise above for
            lower-is-better metrics such as ``brier``) on the latest labelled window.
        period: Error-budget period (``30d``).
    """

    name: str
    sli: Literal["availability", "latency", "quality"] | None = None
    objective: float = Field(default=0.99, gt=0, lt=1)
    threshold_ms: float | None = None
    metric: str | None = None
    min_value: float | None = None
    period: DurationText = "30d"


class LabelsSpec(_Strict):
    """Where delayed ground truth comes from and how it joins the prediction log.

    Attributes:
        source: Lake table with outcomes (``silver.flights``) or a labels log (``logs.labels``: request_id, label, ts).
        join: Join keys present in both the logged features and ``source`` (empty: join on ``request_id``).
        expr: SQL expression over ``source`` giving the label (``arr_delay >= 15``); default column ``label``.
        delay: How long labels take to arrive; younger predictions are not judged yet.
        match: ``exact`` (one label per join key) or ``asof``: ``join`` names an entity (a customer, a
            route) with many outcomes over time, and each prediction takes the outcome of its entity
            nearest in time (see ``direction``) within ``tolerance``.
        time_column: The outcome's time in ``source`` (``asof`` only).
        direction: ``forward`` (the first outcome at or after the prediction: what it predicted),
            ``backward`` (the latest outcome before it) or ``nearest``.
        tolerance: The longest gap between a prediction and its outcome (``asof`` only).
    """

    source: str = "logs.labels"
    join: list[str] = Field(default_factory=list)
    expr: str | None = None
    delay: DurationText = "1d"
    match: Literal["exact", "asof"] = "exact"
    time_column: str | None = None
    direction: Literal["forward", "backward", "nearest"] = "forward"
    tolerance: DurationText = "7d"

    @model_validator(mode="after")
    def _asof_needs_entity_and_time(self) -> LabelsSpec:
        if self.match == "asof" and (not self.time_column or not self.join):
            raise ValueError("monitoring.labels with match: asof needs join (the entity keys) and time_column (the outcome's time)")
        return self


class MonitoringSpec(_Strict):
    """Drift detectors, performance with delayed labels, SLOs, and the action each check triggers.

    Attributes:
        table: The prediction log table.
        window: How the log is cut into windows.
        reference_sample: Values per numeric column kept in reference/window profiles (for KS and Wasserstein).
        bins: Quantile bins per numeric column in the reference profile.
        psi_binning: ``quantile`` (textbook: reference deciles) or ``evidently`` (Sturges bins over both samples).
        wasserstein_norm: ``std`` (divide by the reference standard deviation), ``evidently`` (same, floored
            at 0.001), ``iqr`` or ``none``.
        policies: Detector/threshold/action pairs; empty means the built-in defaults.
        webhook_url: Alerts are POSTed here as JSON.
        slos: Service-level objectives.
        labels: Delayed ground truth.
        slices: Columns to compute per-slice performance on.
        schedule: The background monitor inside ``steward serve``.
    """

    table: str = "logs.predictions"
    window: MonitorWindowSpec = Field(default_factory=MonitorWindowSpec)
    reference_sample: int = Field(default=10000, ge=10)
    bins: int = Field(default=10, ge=2, le=1000)
    psi_binning: Literal["quantile", "evidently"] = "quantile"
    wasserstein_norm: Literal["std", "evidently", "iqr", "none"] = "std"
    policies: list[MonitorPolicySpec] = Field(default_factory=list)
    webhook_url: str | None = None
    slos: list[SloSpec] = Field(default_factory=list)
    labels: LabelsSpec | None = None
    slices: list[str] = Field(default_factory=list)
    schedule: MonitorScheduleSpec = Field(default_factory=MonitorScheduleSpec)
