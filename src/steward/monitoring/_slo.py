"""SLOs with error budgets and multi-window, multi-burn-rate alerts (Google SRE workbook, ch. 5).

An SLI is a stream of good/bad events. Over a window the *burn rate* is
``error_rate / (1 - objective)``: 1 spends the budget exactly over the SLO period.
An alert fires only when both its long and its short window burn faster than the
factor (the short window makes it reset quickly once the problem is fixed):

* fast burn (page): 1h and 5m above 14.4× (2% of a 30-day budget in an hour);
* slow burn (ticket): 6h and 30m above 6× (5% of the budget in six hours).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from steward._primitives import parse_duration

if TYPE_CHECKING:
    from steward.spec import SloSpec

__all__ = ["DEFAULT_BURN_ALERTS", "BurnAlert", "SloStatus", "burn_rate", "evaluate_slo", "quality_events", "sli_events", "slo_kind"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BurnAlert:
    """A multi-window burn-rate alert."""

    name: str
    long_window: str
    short_window: str
    factor: float
    severity: str


DEFAULT_BURN_ALERTS = (
    BurnAlert("fast_burn", "1h", "5m", 14.4, "page"),
    BurnAlert("slow_burn", "6h", "30m", 6.0, "ticket"),
)


@dataclass
class SloStatus:
    """An SLO evaluated at one moment.

    Attributes:
        sli: Share of good events over the SLO period (None without events).
        error_budget_remaining: 1 - (bad share / allowed bad share) over the period; negative when overspent.
        burn_rates: Window (``5m``, ``1h``, ...) → burn rate (None without events in it).
        firing: Names of burn alerts whose two windows both exceed their factor.
    """

    name: str
    kind: str
    objective: float
    sli: float | None
    events: int
    error_budget_remaining: float | None
    burn_rates: dict[str, float | None] = field(default_factory=dict)
    firing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def slo_kind(slo: SloSpec) -> str:
    """The SLI kind: explicit, else inferred from the name."""
    if slo.sli:
        return slo.sli
    for k in ("availability", "latency", "quality"):
        if k in slo.name:
            return k
    return "availability"


def burn_rate(bad: int, total: int, objective: float) -> float | None:
    """Error rate over the window divided by the error budget rate (None without events)."""
    if total <= 0:
        return None
    return (bad / total) / (1.0 - objective)


def sli_events(log: pl.DataFrame, slo: SloSpec) -> pl.DataFrame:
    """The good/bad events of an SLO from the prediction log: columns ``ts`` and ``good``.

    Availability: a row is bad when its ``status`` is an HTTP 5xx (or ``error``) or its ``error``
    column is set; a log without such columns only holds served predictions, all good, and so
    are the null ``status``/``error`` of rows written before the server logged failures.
    Latency: good when ``latency_ms <= threshold_ms``.
    Quality: needs labels, see :func:`steward.monitoring.evaluate_policies`; here every row is good.
    Shadow rows (a challenger's answers to copies, never returned to a caller) are no events.
    """
    kind = slo_kind(slo)
    if "shadow" in log.columns:
        log = log.filter(~pl.col("shadow").fill_null(False))
    if log.height == 0:
        return pl.DataFrame({"ts": [], "good": []}, schema={"ts": pl.Datetime("us", "UTC"), "good": pl.Boolean})
    good: pl.Expr = pl.lit(True)
    if kind == "availability":
        if "status" in log.columns:
            st = pl.col("status")
            # a null status (a row older than the column) is a served prediction: good
            good = (st.cast(pl.Int64, strict=False) < 500).fill_null(st.cast(pl.Utf8) != "error").fill_null(True)
        if "error" in log.columns:
            good = good & pl.col("error").is_null()
    elif kind == "latency" and "latency_ms" in log.columns:
        good = (pl.col("latency_ms") <= (slo.threshold_ms if slo.threshold_ms is not None else 100.0)).fill_null(False)
    return log.select(pl.col("ts").cast(pl.Datetime("us", "UTC")), good.alias("good"))


def quality_events(joined: pl.DataFrame, slo: SloSpec, *, threshold: float = 0.5) -> pl.DataFrame:
    """The good/bad events of a quality SLO from labelled predictions: columns ``ts`` and ``good``.

    Every labelled prediction is an event, good when it is correct at ``threshold`` (a score at or
    above it predicts the positive class): the per-prediction form of accuracy. Whole-window
    metrics (``roc_auc``, ``brier``, ...) have no per-prediction form; a quality SLO's ``min_value``
    on its ``metric`` is checked on the labelled window instead (see :func:`steward.monitoring.evaluate`).

    Args:
        joined: Predictions with their labels (``ts``, ``prediction``, ``label``), as
            :func:`steward.monitoring.join_labels` returns them.
        slo: The quality SLO (its events do not depend on it; kept for symmetry with :func:`sli_events`).
        threshold: Score from which a prediction counts as positive.
    """
    if joined.height == 0 or not {"ts", "prediction", "label"} <= set(joined.columns):
        return pl.DataFrame({"ts": [], "good": []}, schema={"ts": pl.Datetime("us", "UTC"), "good": pl.Boolean})
    predicted = pl.col("prediction").cast(pl.Float64) >= threshold
    actual = pl.col("label").cast(pl.Float64) >= 0.5
    return joined.select(pl.col("ts").cast(pl.Datetime("us", "UTC")), (predicted == actual).fill_null(False).alias("good"))


def evaluate_slo(
    events: pl.DataFrame, slo: SloSpec, *, now: datetime | None = None, alerts: tuple[BurnAlert, ...] = DEFAULT_BURN_ALERTS
) -> SloStatus:
    """Error budget and burn rates of an SLO at ``now`` (default: the latest event)."""
    kind = slo_kind(slo)
    if events.height == 0:
        return SloStatus(slo.name, kind, slo.objective, None, 0, None, {}, [])
    ts = events.get_column("ts").dt.epoch("us").to_numpy()
    good = events.get_column("good").to_numpy().astype(bool)
    order = np.argsort(ts, kind="stable")
    ts, good = ts[order], good[order]
    now_us = int(ts[-1]) + 1 if now is None else int(now.astimezone(UTC).timestamp() * 1_000_000) + 1
    bad_cum = np.concatenate([[0], np.cumsum(~good)])

    def window(span: timedelta) -> tuple[int, int]:
        lo = int(np.searchsorted(ts, now_us - int(span.total_seconds() * 1_000_000), side="left"))
        hi = int(np.searchsorted(ts, now_us, side="left"))
        return int(bad_cum[hi] - bad_cum[lo]), hi - lo

    bad_p, tot_p = window(parse_duration(slo.period))
    sli = 1.0 - bad_p / tot_p if tot_p else None
    budget = 1.0 - (bad_p / tot_p) / (1.0 - slo.objective) if tot_p else None
    rates: dict[str, float | None] = {}
    firing: list[str] = []
    for a in alerts:
        for w in (a.long_window, a.short_window):
            if w not in rates:
                b, t = window(parse_duration(w))
                rates[w] = burn_rate(b, t, slo.objective)
        lr, sr = rates[a.long_window], rates[a.short_window]
        if lr is not None and sr is not None and lr > a.factor and sr > a.factor:
            firing.append(a.name)
    return SloStatus(slo.name, kind, slo.objective, sli, tot_p, budget, rates, firing)
