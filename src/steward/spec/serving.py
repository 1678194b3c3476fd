"""The ``serving:`` section: which models are served, micro-batching, the prediction log and rollout policies."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steward.spec._base import _Strict
from steward.spec.security import ServingAuthSpec

__all__ = [
    "BatchingSpec",
    "InputPolicySpec",
    "PredictionLogSpec",
    "RolloutSloSpec",
    "RolloutSpec",
    "ServedModelSpec",
    "ServingSpec",
    "ShadowSpec",
]


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


InputMode = Literal["reject", "warn", "allow"]


class InputPolicySpec(_Strict):
    """What the server does with a value outside a feature's training categories or its data contract's range.

    Attributes:
        default: The mode of every feature not named in ``features``: ``reject`` (422 naming the row and
            field), ``warn`` (served, with a ``Warning`` header and ``steward_input_out_of_policy_total``)
            or ``allow`` (served, nothing said).
        features: Feature name → its own mode.
    """

    default: InputMode = "warn"
    features: dict[str, InputMode] = Field(default_factory=dict)


class ServedModelSpec(_Strict):
    """One model the server loads: by registry alias, with an optional rollout policy.

    Attributes:
        alias: Registry alias served as the champion.
        entity_keys: Row fields that identify an entity; rows carrying only these get online features.
        rollout: The rollout policy started with ``steward rollout start`` (or at boot with ``auto_start``).
        auto_start: Start ``rollout`` when the server boots and a challenger exists.
        input_policy: Unseen categories and out-of-range values, per feature (default: warn).
    """

    alias: str = "champion"
    entity_keys: list[str] = Field(default_factory=list)
    rollout: RolloutSpec | None = None
    auto_start: bool = False
    input_policy: InputPolicySpec = Field(default_factory=InputPolicySpec)


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
