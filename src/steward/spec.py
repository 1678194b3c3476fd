"""``steward.yaml``: the project spec, as pydantic models.

This module is the single source of truth for the project file. Every model
forbids unknown keys, so a typo is an error that names the key and suggests the
nearest valid one instead of being silently ignored.

Later lifecycle stages own their section model here (``features``, ``model``,
``serving``, ``monitoring``, ``llm``); stages import these models, never the
other way round.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from steward._primitives import DurationText, check_duration
from steward.errors import SpecError

__all__ = [
    "SPEC_FILENAME",
    "AgentSpec",
    "FeaturesSpec",
    "GatewaySpec",
    "GuardrailsSpec",
    "LlmSpec",
    "ModelSpec",
    "MonitoringSpec",
    "RagSpec",
    "Role",
    "ServingSpec",
    "SourceSpec",
    "Spec",
    "StorageSpec",
    "find_spec",
    "load_spec",
    "parse_spec",
]

SPEC_FILENAME = "steward.yaml"


class _Strict(BaseModel):
    """Base for every spec model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)


class StorageSpec(_Strict):
    """Where Steward keeps its state. Every URL is optional; the default is local disk.

    Attributes:
        root: Directory for all embedded state, relative to ``steward.yaml``.
        lake_url: Root of the Delta lake (a path or ``s3://``); default ``ROOT/lake``.
        metadata_url: ``postgresql://...`` to keep metadata in PostgreSQL; default SQLite.
        tracking_uri: MLflow tracking URI; default SQLite under ROOT.
        artifact_root: MLflow artifact root; default ``ROOT/mlartifacts``.
        online_store_url: ``redis://...`` for the online feature store; default SQLite.
        stream_url: ``redis://...`` for Redis Streams; default a local SQLite queue.
        vector_store_url: a shared vector server; default LanceDB under ROOT.
        cache_url: ``redis://...`` for LLM cache, budgets and rate limits; default SQLite.
    """

    root: str = ".steward"
    lake_url: str | None = None
    metadata_url: str | None = None
    tracking_uri: str | None = None
    artifact_root: str | None = None
    online_store_url: str | None = None
    stream_url: str | None = None
    vector_store_url: str | None = None
    cache_url: str | None = None


class CsvOptions(_Strict):
    """How to read a CSV landing file."""

    delimiter: str = ","
    header: bool = True
    null_values: list[str] = Field(default_factory=lambda: ["", "NA", "NULL", "null"])


class SourceSpec(_Strict):
    """One data source that lands in bronze.

    Attributes:
        kind: ``files`` (a landing directory) or ``redis_stream``.
        path: Landing directory (for ``files``), relative to ``steward.yaml``.
        format: File format of landing files.
        pattern: Glob of files to pick up inside ``path``.
        contract: Name of the contract (in ``contracts``) that gates bronze → silver.
        stream: Redis stream key (for ``redis_stream``).
        group: Consumer group name (for ``redis_stream``).
    """

    kind: Literal["files", "redis_stream"] = "files"
    path: str | None = None
    format: Literal["csv", "parquet", "jsonl"] = "csv"
    pattern: str = "*"
    contract: str
    csv: CsvOptions = Field(default_factory=CsvOptions)
    stream: str | None = None
    group: str = "steward"


_LAYERS = ("bronze", "silver", "gold", "quarantine", "logs")


def _check_source(value: str) -> str:
    layer, dot, name = value.partition(".")
    if not dot or layer not in _LAYERS or not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ValueError(f"a source is LAYER.NAME with LAYER one of {', '.join(_LAYERS)}, e.g. silver.flights")
    return value


class FeatureEntitySpec(_Strict):
    """An entity that features describe (a carrier, a route, a plane) and its join keys.

    Attributes:
        keys: Columns that identify one entity; the same names in sources and events.
        description: Free text for ``steward features list``.
    """

    keys: list[str] = Field(min_length=1)
    description: str = ""


class FeatureAggregateSpec(_Strict):
    """A windowed aggregate over an entity's source rows, as of the event time.

    Attributes:
        name: Feature name.
        expr: SQL expression evaluated per source row (``arr_delay >= 15``).
        function: ``mean``, ``sum`` or ``count`` (of non-null values of ``expr``).
        window: Length of the window that ends strictly before the event (``7d``).
    """

    name: str
    expr: str
    function: Literal["mean", "sum", "count"] = "mean"
    window: DurationText


class FeatureTableSpec(_Strict):
    """One gold feature table: an entity, a source and either columns, a transform or aggregates.

    Attributes:
        entity: Name of the entity (in ``features.entities``) whose keys join this table.
        source: Lake table the features come from (``silver.weather``).
        timestamp: Source column holding each row's time; omit for static tables (planes).
        available_after: Delay after ``timestamp`` before a row's values are known
            (a flight's arrival is known only after it lands); rows are used only once known.
        ttl: Oldest value a point-in-time lookup accepts (older gives null); default no limit.
        columns: Feature name → SQL expression over source columns (``seats_per_engine: seats / engines``).
        transform: Dotted path of a Python function ``(polars.DataFrame) -> polars.DataFrame``
            returning entity keys, ``timestamp`` (if set) and feature columns.
        aggregates: Windowed aggregates (requires ``timestamp``).
        description: Free text.
    """

    entity: str
    source: str
    timestamp: str | None = None
    available_after: DurationText = "0s"
    ttl: DurationText | None = None
    columns: dict[str, str] | None = None
    transform: str | None = None
    aggregates: list[FeatureAggregateSpec] | None = None
    description: str = ""

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        return _check_source(value)

    @model_validator(mode="after")
    def _one_kind(self) -> FeatureTableSpec:
        kinds = [k for k in ("columns", "transform", "aggregates") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of 'columns', 'transform' or 'aggregates' (got {', '.join(kinds) or 'none'})")
        if self.aggregates and not self.timestamp:
            raise ValueError("'aggregates' need 'timestamp' (the source column the windows are measured on)")
        if self.transform and "." not in self.transform:
            raise ValueError(f"'transform' must be a dotted path like 'my_pkg.features.weather' (got {self.transform!r})")
        return self


class FeatureLabelSpec(_Strict):
    """The label of each event: a name and an SQL expression (``arr_delay >= 15``)."""

    name: str
    expr: str


class FeatureEventsSpec(_Strict):
    """Labelled events that training sets are built from.

    Attributes:
        source: Lake table of events (``silver.flights``).
        timestamp: Event time column; every feature is looked up as of this time.
        label: Label name and expression (rows where it is null are left out).
        keys: Columns that identify one event (kept in the training set).
        features: Request-time features taken from the event row itself: a list of
            columns, or name → SQL expression. Serving computes them the same way.
        filter: Optional SQL predicate keeping only some events.
    """

    source: str
    timestamp: str
    label: FeatureLabelSpec
    keys: list[str] = Field(default_factory=list)
    features: list[str] | dict[str, str] = Field(default_factory=dict)
    filter: str | None = None

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        return _check_source(value)


class FeaturesSpec(_Strict):
    """Feature definitions: one place for training (point-in-time joins) and serving (online store).

    Attributes:
        entities: Entity name → its join keys.
        tables: Gold feature table name → its definition (written to ``gold.NAME``).
        events: The labelled events training sets are built from.
        categorical: Feature names the model should treat as categorical.
    """

    entities: dict[str, FeatureEntitySpec] = Field(default_factory=dict)
    tables: dict[str, FeatureTableSpec] = Field(default_factory=dict)
    events: FeatureEventsSpec | None = None
    categorical: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> FeaturesSpec:
        seen: dict[str, str] = {}
        if self.events is not None:
            names = self.events.features if isinstance(self.events.features, list) else list(self.events.features)
            for n in names:
                seen[n] = "events.features"
        for tname, table in self.tables.items():
            if not tname or not all(c.isalnum() or c == "_" for c in tname):
                raise ValueError(f"tables.{tname}: a table name uses only letters, digits and '_'")
            if table.entity not in self.entities:
                known = ", ".join(sorted(self.entities)) or "none"
                raise ValueError(
                    f"tables.{tname}.entity: unknown entity '{table.entity}' (declare it under features.entities; known: {known})"
                )
            names = list(table.columns or {}) + [a.name for a in table.aggregates or []]
            for n in names:
                if n in seen:
                    raise ValueError(f"tables.{tname}: feature '{n}' is also defined in {seen[n]}; feature names must be unique")
                seen[n] = f"tables.{tname}"
        for c in self.categorical:
            if c not in seen and not any(t.transform for t in self.tables.values()):
                raise ValueError(f"categorical: '{c}' is not a feature (known: {', '.join(seen) or 'none'})")
        return self


class SearchParamSpec(_Strict):
    """One hyperparameter's search range: ``{low, high, log, type}`` or ``{choices: [...]}``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    type: Literal["float", "int", "categorical"] = "float"
    choices: list[Any] | None = None


class SearchSpec(_Strict):
    """Hyperparameter search: ``n_trials: 0`` means no search."""

    n_trials: int = Field(default=0, ge=0)
    engine: Literal["optuna", "ray"] = "optuna"
    timeout_seconds: float | None = None
    space: dict[str, SearchParamSpec] = Field(default_factory=dict)


class SplitSpec(_Strict):
    """Time split: train on earlier events, validate on later ones."""

    by: Literal["time"] = "time"
    validation_from: str | None = None
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)


class FairnessSpec(_Strict):
    """Largest allowed gap of ``metric`` between the groups of ``column``."""

    column: str
    metric: Literal["roc_auc", "log_loss", "accuracy", "f1"] = "roc_auc"
    max_gap: float = 0.1
    min_group_size: int = 50


class GateSpec(_Strict):
    """Non-inferiority margins (challenger vs champion) and absolute thresholds (first model)."""

    margin: float = 0.005
    slice_margin: float = 0.01
    fairness_margin: float = 0.01
    latency_p99_ms: float | None = 50.0
    latency_margin: float = 1.5
    latency_slack_ms: float = 1.0
    min_metric: float | None = None
    min_slice_metric: float | None = None
    min_slice_size: int = 50
    batch_size: int = 1000
    latency_repeats: int = 30


class ModelSpec(_Strict):
    """The model to train: estimator, split, search, slices, fairness and the promotion gate."""

    name: str = "model"
    estimator: str = "lightgbm.LGBMClassifier"
    params: dict[str, Any] = Field(default_factory=dict)
    task: Literal["binary_classification"] = "binary_classification"
    metric: Literal["roc_auc", "log_loss", "accuracy", "f1"] = "roc_auc"
    seed: int = 42
    split: SplitSpec = Field(default_factory=SplitSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    slices: list[str] = Field(default_factory=list)
    fairness: FairnessSpec | None = None
    gate: GateSpec = Field(default_factory=GateSpec)
    explain_sample: int = 500
    intended_use: str = ""
    limitations: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_." for c in value):
            raise ValueError("use only letters, digits, '-', '_' and '.'")
        return value


Role = Literal["viewer", "operator", "admin"]
"""API roles, lowest first: viewer (read) < operator (predict) < admin (rollouts, aliases, reloads)."""


class ServingKeySpec(_Strict):
    """An API key of the model server: the secret is read from ``key_env``, never written in the spec.

    Attributes:
        key_env: Environment variable holding the key.
        role: ``viewer`` (read), ``operator`` (predict) or ``admin`` (rollouts, aliases, reloads).
    """

    key_env: str
    role: Role = "operator"


class ServingAuthSpec(_Strict):
    """API keys with roles. Keys also come from ``STEWARD_API_KEYS`` (``key:role,...``) or a secrets file.

    Attributes:
        required: Refuse requests without a valid key (off only for local experiments).
        keys: Key name → key (secret from an environment variable).
        keys_file: A secrets file (YAML or JSON mapping of key → role), relative to ``steward.yaml``.
        public_metrics: Serve ``/metrics`` without a key (Prometheus scrapes inside the cluster).
    """

    required: bool = True
    keys: dict[str, ServingKeySpec] = Field(default_factory=dict)
    keys_file: str | None = None
    public_metrics: bool = True


class BatchingSpec(_Strict):
    """Adaptive micro-batching of concurrent requests (a batch runs when full or after ``max_wait_ms``)."""

    enabled: bool = True
    max_batch_size: int = Field(default=64, ge=1, le=100_000)
    max_wait_ms: float = Field(default=2.0, ge=0, le=10_000)
    # a model answering faster than this (moving average) runs small requests on the event loop, no thread hop; 0 = never.
    # Champion only: a challenger (shadow, canary, A/B, green) always runs in its worker thread
    inline_below_ms: float = Field(default=0.5, ge=0, le=1_000)


class PredictionLogSpec(_Strict):
    """Every prediction goes to the lake, in batched asynchronous writes that never block a response.

    Attributes:
        compact_every: After this many writes, the writer compacts the day's partition into large files
            (one commit; older versions stay readable); 0 turns it off.
    """

    enabled: bool = True
    table: str = "logs.predictions"
    queue_size: int = Field(default=100_000, ge=1)
    flush_rows: int = Field(default=5_000, ge=1)
    flush_interval_s: float = Field(default=5.0, gt=0)
    compact_every: int = Field(default=200, ge=0)


class ShadowSpec(_Strict):
    """The shadow challenger's bounded queue and per-request timeout."""

    queue_size: int = Field(default=1_000, ge=1)
    timeout_ms: float = Field(default=250.0, gt=0)
    workers: int = Field(default=1, ge=1, le=64)


class RolloutSloSpec(_Strict):
    """What the challenger must stay within for a progressive rollout to advance.

    Attributes:
        max_error_rate: Highest share of failed challenger requests in the window.
        max_p99_ms: Highest challenger p99 latency in the window.
        max_prediction_shift: Guard: highest |mean(challenger) − mean(champion)| of predictions.
        max_disagreement: Guard (shadow): highest share of rows whose labels differ at 0.5.
        min_requests: Requests the challenger must have served in the window before a step can advance.
    """

    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_p99_ms: float = Field(default=100.0, gt=0)
    max_prediction_shift: float | None = Field(default=None, ge=0)
    max_disagreement: float | None = Field(default=None, ge=0, le=1)
    min_requests: int = Field(default=100, ge=0)


class RolloutSpec(_Strict):
    """A rollout policy of one model.

    Attributes:
        mode: ``canary`` (weighted, sticky), ``ab`` (exclusive sticky split, outcome metrics per variant),
            ``shadow`` (challenger gets copies, never answers) or ``bluegreen`` (instant switch).
        challenger_alias: Registry alias of the challenger.
        sticky_key: Request field (or ``X-Steward-Key`` header) that keeps a caller on one variant.
        steps: Progressive challenger shares in percent, e.g. ``[5, 25, 50, 100]`` (canary).
        weight: Fixed challenger share in percent when there are no steps (canary, A/B).
        step_window_s: How long each step is watched before it may advance.
        slo: Bounds and guards the challenger must stay within.
        auto: Advance and roll back automatically.
    """

    mode: Literal["canary", "ab", "shadow", "bluegreen"] = "canary"
    challenger_alias: str = "challenger"
    sticky_key: str | None = None
    steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0])
    weight: float | None = Field(default=None, ge=0, le=100)
    step_window_s: float = Field(default=300.0, gt=0)
    slo: RolloutSloSpec = Field(default_factory=RolloutSloSpec)
    auto: bool = True


class ServedModelSpec(_Strict):
    """One model the server loads: by registry alias, with an optional rollout policy.

    Attributes:
        alias: Registry alias served as the champion.
        entity_keys: Row fields that identify an entity; rows carrying only these get online features.
        rollout: The rollout policy started with ``steward rollout start`` (or at boot with ``auto_start``).
        auto_start: Start ``rollout`` when the server boots and a challenger exists.
    """

    alias: str = "champion"
    entity_keys: list[str] = Field(default_factory=list)
    rollout: RolloutSpec | None = None
    auto_start: bool = False


class ServingSpec(_Strict):
    """How models are served: which models, auth, batching, logging, rollout policies.

    Attributes:
        models: Model name → what to serve. The server starts without any and reports not-ready.
        auth: API keys and roles.
        batching: Micro-batching bounds.
        prediction_log: Where and how predictions are logged.
        shadow: Shadow traffic bounds.
        poll_interval_s: How often the registry is polled for alias changes (0 = never; running rollouts
            are still evaluated on their own tick, a quarter of the step window, at most every 5 s).
        max_body_bytes: Larger request bodies get 413.
        max_rows: Most rows in one predict request.
        slo_availability: Availability objective (burn-rate alerts are derived from it).
        slo_p99_ms: Latency objective of the champion.
        access_log: Write one JSON log line per request.
        trace_sample_ratio: Share of requests traced with OpenTelemetry (spans stored locally; OTLP export
            when ``llm.gateway.tracing.otlp_endpoint`` is set, off by default).
    """

    models: dict[str, ServedModelSpec] = Field(default_factory=dict)
    auth: ServingAuthSpec = Field(default_factory=ServingAuthSpec)
    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    prediction_log: PredictionLogSpec = Field(default_factory=PredictionLogSpec)
    shadow: ShadowSpec = Field(default_factory=ShadowSpec)
    poll_interval_s: float = Field(default=10.0, ge=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    max_rows: int = Field(default=10_000, ge=1)
    slo_availability: float = Field(default=0.999, gt=0, lt=1)
    slo_p99_ms: float = Field(default=50.0, gt=0)
    access_log: bool = True
    trace_sample_ratio: float = Field(default=1.0, ge=0, le=1)


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


class ProviderSpec(_Strict):
    """One upstream LLM provider of the gateway.

    Attributes:
        kind: ``openai`` (any OpenAI-compatible HTTP endpoint: vLLM, Ollama, OpenAI, ...),
            ``anthropic`` (the Messages API) or ``local`` (offline, extractive, deterministic).
        base_url: Endpoint root, e.g. ``http://127.0.0.1:8001/v1`` (not used by ``local``).
        api_key_env: Name of the environment variable holding the provider's API key.
        timeout_s: Per-request timeout (connect, and between two streamed chunks).
        max_retries: Retries on the same provider before falling back to the next one.
    """

    kind: Literal["openai", "anthropic", "local"] = "openai"
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=1, ge=0, le=10)


class BudgetSpec(_Strict):
    """A spending cap per period, in tokens and/or US dollars (null = no cap)."""

    tokens: int | None = Field(default=None, ge=0)
    usd: float | None = Field(default=None, ge=0)
    period: Literal["day", "month"] = "month"


class RateLimitSpec(_Strict):
    """Per-minute request and token caps (null = no cap)."""

    requests_per_minute: int | None = Field(default=None, ge=0)
    tokens_per_minute: int | None = Field(default=None, ge=0)


class GatewayKeySpec(_Strict):
    """A gateway key: the secret is read from ``key_env``, never written in the spec.

    Attributes:
        key_env: Environment variable holding the bearer token.
        team: Team whose budget this key also draws from.
        role: ``user`` or ``admin``.
    """

    key_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="an environment variable NAME, never the secret itself")
    team: str | None = None
    role: Literal["user", "admin"] = "user"
    budget: BudgetSpec | None = None
    rate_limit: RateLimitSpec | None = None


class TeamSpec(_Strict):
    """A team's shared budget and per-minute rate limit (counted over every key of the team)."""

    budget: BudgetSpec | None = None
    rate_limit: RateLimitSpec | None = None


class PriceSpec(_Strict):
    """Price of one model in US dollars per one million tokens."""

    input_per_1m: float = Field(default=0.0, ge=0)
    output_per_1m: float = Field(default=0.0, ge=0)


class CacheSpec(_Strict):
    """Response cache: exact (normalised request hash) and semantic (embedding similarity)."""

    exact: bool = True
    semantic: bool = False
    threshold: float = Field(default=0.95, gt=0, le=1)
    ttl_s: float = Field(default=3600.0, gt=0)


class CircuitBreakerSpec(_Strict):
    """Open a provider's circuit after ``failures`` consecutive failures, for ``cooldown_s``."""

    failures: int = Field(default=5, ge=1)
    cooldown_s: float = Field(default=30.0, ge=0)


class TracingSpec(_Strict):
    """Spans go to ``ROOT/traces.db``; set ``otlp_endpoint`` to also export over OTLP/HTTP."""

    otlp_endpoint: str | None = None


class GatewaySpec(_Strict):
    """The OpenAI-compatible gateway: providers, aliases, keys, budgets, cache, prices.

    Attributes:
        providers: Provider name → provider. A ``local`` provider always exists.
        aliases: Model alias → ordered fallback chain of ``provider:model`` targets.
        keys: Key name → key (its secret comes from an environment variable).
        teams: Team name → team budget and rate limit (shared by the team's keys).
        prices: ``provider:model`` (or bare model) → price per 1M input/output tokens.
        prompts_dir: Directory of versioned prompt files, relative to ``steward.yaml``.
        default_max_tokens: Completion tokens reserved against budgets when a request sets no ``max_tokens``.
    """

    providers: dict[str, ProviderSpec] = Field(default_factory=dict)
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    keys: dict[str, GatewayKeySpec] = Field(default_factory=dict)
    teams: dict[str, TeamSpec] = Field(default_factory=dict)
    prices: dict[str, PriceSpec] = Field(default_factory=dict)
    cache: CacheSpec = Field(default_factory=CacheSpec)
    circuit_breaker: CircuitBreakerSpec = Field(default_factory=CircuitBreakerSpec)
    tracing: TracingSpec = Field(default_factory=TracingSpec)
    prompts_dir: str = "prompts"
    default_max_tokens: int = Field(default=512, ge=1)


class RagCollectionSpec(_Strict):
    """One RAG collection (a corpus indexed together).

    Attributes:
        kind: ``stdlib`` (Python standard library docstrings, plus Debian's python3.11-doc
            HTML when installed) or ``path`` (a directory of Markdown, HTML and text files).
        modules: For ``stdlib``: a list of module names, or ``all`` for the built-in broad list.
        path: For ``path``: the directory, relative to ``steward.yaml``.
        include_html: For ``stdlib``: also index the python3.11-doc HTML when it is installed.
    """

    kind: Literal["stdlib", "path"] = "path"
    modules: list[str] | Literal["all"] = "all"
    path: str | None = None
    include_html: bool = True


class RagHybridSpec(_Strict):
    """Weights of the two retrievers in reciprocal rank fusion."""

    vector_weight: float = Field(default=1.0, ge=0)
    keyword_weight: float = Field(default=1.0, ge=0)
    rrf_k: int = Field(default=60, ge=1)


def _default_collections() -> dict[str, RagCollectionSpec]:
    return {"stdlib": RagCollectionSpec(kind="stdlib"), "docs": RagCollectionSpec(kind="path", path="docs")}


class RagSpec(_Strict):
    """Retrieval-augmented generation: corpora, chunking, embedding, retrieval.

    Attributes:
        collections: Named collections; default ``stdlib`` and ``docs`` (``docs/`` of the project).
        default_collection: The collection ``ask`` searches when none is named.
        chunk_tokens: Window size in model tokens (capped at the embedder's 254 usable tokens).
        overlap_tokens: Tokens shared by consecutive windows of one section.
        top_k: Chunks cited per answer.
        min_score: Calibrated cosine similarity below which the answer is "I don't know".
        hybrid: Reciprocal rank fusion weights.
        model: Gateway alias for generated answers; ``None`` answers extractively, offline.
        gateway_key: The ``llm.gateway.keys`` entry whose budget RAG calls are charged to
            (default: the first declared key).
    """

    collections: dict[str, RagCollectionSpec] = Field(default_factory=_default_collections)
    default_collection: str = "stdlib"
    chunk_tokens: int = Field(default=256, ge=16, le=4096)
    overlap_tokens: int = Field(default=32, ge=0)
    top_k: int = Field(default=5, ge=1, le=50)
    min_score: float = Field(default=0.35, ge=-1.0, le=1.0)
    hybrid: RagHybridSpec = Field(default_factory=RagHybridSpec)
    model: str | None = None
    gateway_key: str | None = None


class GuardSpec(_Strict):
    """One guard and what to do when it fires.

    Attributes:
        enabled: Run this guard at all.
        action: ``block`` (refuse the request), ``redact`` (mask the finding and go on) or
            ``flag`` (go on, and report the finding with the answer).
        threshold: For the injection classifier: the probability at or above which it fires.
        min_support: For grounding: the share of answer sentences that must be supported.
    """

    enabled: bool = True
    action: Literal["block", "redact", "flag"] = "flag"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    min_support: float = Field(default=0.5, ge=0.0, le=1.0)


class GuardrailsSpec(_Strict):
    """Input and output guards, each with an action."""

    injection: GuardSpec = Field(default_factory=lambda: GuardSpec(action="block", threshold=0.5))
    pii_input: GuardSpec = Field(default_factory=lambda: GuardSpec(action="redact"))
    pii_output: GuardSpec = Field(default_factory=lambda: GuardSpec(action="redact"))
    grounding: GuardSpec = Field(default_factory=lambda: GuardSpec(action="flag", min_support=0.5))


class AgentSpec(_Strict):
    """The bounded operations agent: the model it plans with and the bounds of every run.

    Attributes:
        model: Gateway alias (or ``provider:model``) the agent plans with.
        gateway_key: Name of a key in ``llm.gateway.keys`` whose budget the agent spends
            (default: an internal ``agent`` key without a budget of its own).
        max_steps: Model turns per run (plan → act → observe counts as one).
        max_tokens: Prompt + completion tokens per run.
        max_usd: Spend per run in US dollars.
        max_seconds: Wall time per run.
        approval_ttl_s: How long a granted approval token stays valid.
        max_result_chars: Tool output handed back to the model is cut to this many characters.
    """

    model: str = "chat-default"
    gateway_key: str | None = None
    max_steps: int = Field(default=8, ge=1, le=200)
    max_tokens: int = Field(default=20_000, ge=1)
    max_usd: float = Field(default=0.5, ge=0)
    max_seconds: float = Field(default=120.0, gt=0)
    approval_ttl_s: float = Field(default=900.0, gt=0)
    max_result_chars: int = Field(default=4_000, ge=100)


class LlmSpec(_Strict):
    """The LLM half: gateway, RAG, guardrails and the agent."""

    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    rag: RagSpec = Field(default_factory=RagSpec)
    guardrails: GuardrailsSpec = Field(default_factory=GuardrailsSpec)
    agent: AgentSpec = Field(default_factory=AgentSpec)


class Spec(_Strict):
    """The whole ``steward.yaml``.

    Attributes:
        project: Project name (letters, digits, ``-`` and ``_``).
        storage: Where state lives.
        sources: Named sources that land in bronze.
        contracts: Contract name → contract file path (relative to ``steward.yaml``).
        base_dir: Directory of the spec file; every relative path resolves against it.
    """

    project: str
    storage: StorageSpec = Field(default_factory=StorageSpec)
    sources: dict[str, SourceSpec] = Field(default_factory=dict)
    contracts: dict[str, str] = Field(default_factory=dict)
    features: FeaturesSpec = Field(default_factory=FeaturesSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    llm: LlmSpec = Field(default_factory=LlmSpec)

    base_dir: Path = Field(default=Path("."), exclude=True)
    spec_path: Path = Field(default=Path(SPEC_FILENAME), exclude=True)

    @field_validator("project")
    @classmethod
    def _project_name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_" for c in value):
            raise ValueError("use only letters, digits, '-' and '_'")
        return value

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """Resolve a path from the spec against the spec file's directory."""
        p = Path(os.path.expandvars(os.fspath(path))).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def root(self) -> Path:
        """The embedded-state directory (created on demand by the stages)."""
        return self.resolve(self.storage.root)

    @property
    def lake_url(self) -> str:
        """Root URI of the Delta lake."""
        if self.storage.lake_url:
            url = self.storage.lake_url
            return url if "://" in url else str(self.resolve(url))
        return str(self.root / "lake")

    def contract_path(self, name: str) -> Path:
        """Path of a named contract, or a :class:`SpecError` naming the fix."""
        if name not in self.contracts:
            raise SpecError(
                f"{self.spec_path}: contract '{name}' is not declared",
                code="spec.unknown_contract",
                hint=f"add it under 'contracts:' (known: {', '.join(sorted(self.contracts)) or 'none'})",
            )
        return self.resolve(self.contracts[name])

    def source(self, name: str) -> SourceSpec:
        """A named source, or a :class:`SpecError` naming the known ones."""
        if name not in self.sources:
            raise SpecError(
                f"{self.spec_path}: source '{name}' is not declared",
                code="spec.unknown_source",
                hint=f"known sources: {', '.join(sorted(self.sources)) or 'none'}",
            )
        return self.sources[name]


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Walk the model tree along ``loc`` (minus the last part) to list valid keys."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if fields is None:
            return []
        if part in fields:
            ann = fields[part].annotation
            current = _unwrap(ann)
        else:
            # a dict key (e.g. a source name): its value type is already current
            continue
    fields = getattr(current, "model_fields", None)
    return [k for k in fields if k not in ("base_dir", "spec_path")] if fields else []


def _unwrap(ann: Any) -> Any:
    args = getattr(ann, "__args__", None)
    if args:
        for a in reversed(args):
            if isinstance(a, type) and issubclass(a, BaseModel):
                return a
    return ann


def _format_validation_error(path: Path, exc: ValidationError) -> SpecError:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = _loc(loc)
        if err["type"] == "extra_forbidden":
            known = _known_keys(Spec, loc)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            fix = f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(known)}"
            lines.append(f"unknown key '{key}': {fix}")
        elif err["type"] == "missing":
            lines.append(f"missing key '{key}': add it")
        else:
            fix = err["msg"]
            lines.append(f"key '{key}': {fix} (got {err.get('input')!r})")
    first = lines[0]
    more = f" (+{len(lines) - 1} more: {'; '.join(lines[1:])})" if len(lines) > 1 else ""
    return SpecError(
        f"{path}: {first}{more}",
        code="spec.invalid",
        hint="fix the key named above in the spec file",
        details={"errors": lines, "file": str(path)},
    )


def parse_spec(data: Any, path: Path) -> Spec:
    """Validate an already-parsed YAML document as a spec.

    Raises:
        SpecError: naming the file, the key path and the fix.
    """
    if not isinstance(data, dict):
        raise SpecError(
            f"{path}: the spec must be a mapping with at least 'project:'",
            hint="start the file with 'project: NAME'",
        )
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise _format_validation_error(path, exc) from None
    spec.base_dir = path.parent.resolve()
    spec.spec_path = path
    for name, src in spec.sources.items():
        if src.contract not in spec.contracts:
            raise SpecError(
                f"{path}: key 'sources.{name}.contract': contract '{src.contract}' is not declared",
                hint=f"declare it under 'contracts:' (known: {', '.join(sorted(spec.contracts)) or 'none'})",
            )
        if src.kind == "files" and not src.path:
            raise SpecError(f"{path}: key 'sources.{name}.path': a files source needs a landing path", hint="add 'path: landing/NAME'")
        if src.kind == "redis_stream" and not src.stream:
            raise SpecError(f"{path}: key 'sources.{name}.stream': a redis_stream source needs a stream key", hint="add 'stream: NAME'")
    return spec


def load_spec(path: str | os.PathLike[str] | None = None) -> Spec:
    """Load and validate ``steward.yaml``.

    Args:
        path: The spec file or its directory; default: search upwards from the cwd.

    Raises:
        SpecError: the file is missing, is not YAML, or is invalid.
    """
    p = find_spec(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{p}: not valid YAML{where}", code="spec.yaml", hint="check indentation and quoting there") from None
    return parse_spec(data, p)


def find_spec(path: str | os.PathLike[str] | None = None) -> Path:
    """Locate the spec file: an explicit file, a directory holding one, or the nearest upwards."""
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / SPEC_FILENAME
        if not p.exists():
            raise SpecError(f"{p}: no such spec file", code="spec.missing", hint="run 'steward init DIR --example flights' to create one")
        return p
    env = os.environ.get("STEWARD_SPEC")
    if env:
        return find_spec(env)
    here = Path.cwd()
    for d in (here, *here.parents):
        if (d / SPEC_FILENAME).exists():
            return d / SPEC_FILENAME
    raise SpecError(
        f"no {SPEC_FILENAME} in {here} or its parents",
        code="spec.missing",
        hint="pass --spec PATH, set STEWARD_SPEC, or run 'steward init DIR --example flights'",
    )
