"""The traffic router and the progressive-rollout rules: pure functions, no I/O, no clocks.

Everything here takes its inputs (policy, request key, a random draw, window
statistics, elapsed time) as arguments, so every rule is unit-tested without a
server. The rollout controller (:mod:`steward.serving.rollout`) and the model
server call these functions and do the I/O.

Modes:

* ``canary``: the challenger gets ``weight`` % of traffic. With a sticky key the
  split is by a stable hash of (rollout id, key): a caller stays on its variant,
  and raising the weight only moves callers from champion to challenger.
* ``ab``: an exclusive, sticky assignment of each key to exactly one variant
  (A = champion, B = challenger); outcomes are counted per variant.
* ``shadow``: the champion answers every request; the challenger gets a copy
  whose answer is logged and compared, never returned.
* ``bluegreen``: all traffic on one colour; switching (and switching back) is a
  change of ``weight`` between 0 and 100, effective on the next request.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

__all__ = [
    "Route",
    "RoutePolicy",
    "StepDecision",
    "StepRules",
    "VariantStats",
    "bucket",
    "evaluate_step",
    "percentile",
    "route",
]

Mode = Literal["none", "canary", "ab", "shadow", "bluegreen"]
Variant = Literal["champion", "challenger"]


@dataclass(frozen=True)
class RoutePolicy:
    """How one model's traffic is split right now.

    Attributes:
        mode: ``none`` (champion only), ``canary``, ``ab``, ``shadow`` or ``bluegreen``.
        weight: Challenger share in percent (blue/green: 0 = blue/champion, 100 = green/challenger).
        salt: Mixed into the sticky hash (the rollout id), so each rollout reshuffles callers.
    """

    mode: Mode = "none"
    weight: float = 0.0
    salt: str = ""

    def with_weight(self, weight: float) -> RoutePolicy:
        """The same policy at another weight."""
        return replace(self, weight=max(0.0, min(100.0, weight)))


@dataclass(frozen=True)
class Route:
    """Where one request goes.

    Attributes:
        serve: The variant whose answer is returned.
        shadow: Also send a copy to the challenger (its answer is never returned).
        variant_label: The label logged and counted (``champion``/``challenger``, ``A``/``B``, ``blue``/``green``).
    """

    serve: Variant
    shadow: bool = False
    variant_label: str = "champion"


def bucket(key: str, salt: str = "") -> float:
    """A stable position of ``key`` in [0, 100): the same key always lands in the same place."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100.0


def route(policy: RoutePolicy, key: str | None, draw: float) -> Route:
    """Pick the variant for one request.

    Args:
        policy: The model's current policy.
        key: The sticky key (a user or entity id), or None.
        draw: A uniform random number in [0, 1) used when there is no key.
    """
    mode = policy.mode
    if mode == "none":
        return Route("champion")
    if mode == "shadow":
        return Route("champion", shadow=True, variant_label="champion")
    if mode == "bluegreen":
        return Route("challenger", variant_label="green") if policy.weight >= 50.0 else Route("champion", variant_label="blue")
    position = bucket(key, policy.salt) if key is not None else draw * 100.0
    to_challenger = position < policy.weight
    if mode == "ab":
        return Route("challenger", variant_label="B") if to_challenger else Route("champion", variant_label="A")
    return Route("challenger", variant_label="challenger") if to_challenger else Route("champion", variant_label="champion")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


@dataclass(frozen=True)
class VariantStats:
    """One variant's numbers over the evaluation window.

    Attributes:
        requests: Requests served (or shadowed).
        errors: Requests that failed in the model or timed out.
        p99_ms: 99th percentile latency.
        mean_prediction: Mean score (NaN when none).
        disagreement: Share of shadow comparisons whose labels differed (NaN when none).
    """

    requests: int = 0
    errors: int = 0
    p99_ms: float = math.nan
    mean_prediction: float = math.nan
    disagreement: float = math.nan

    @property
    def error_rate(self) -> float:
        """errors / requests (0 with no requests)."""
        return self.errors / self.requests if self.requests else 0.0

    @classmethod
    def from_samples(
        cls, latencies_ms: Sequence[float], errors: int, predictions: Sequence[float], disagreements: Sequence[bool] = ()
    ) -> VariantStats:
        """Summarise raw window samples (``latencies_ms`` has one entry per request, failed ones included)."""
        preds = [p for p in predictions if not math.isnan(p)]
        return cls(
            requests=len(latencies_ms),
            errors=errors,
            p99_ms=percentile(latencies_ms, 99.0),
            mean_prediction=sum(preds) / len(preds) if preds else math.nan,
            disagreement=sum(disagreements) / len(disagreements) if disagreements else math.nan,
        )


@dataclass(frozen=True)
class StepRules:
    """The bounds of a progressive rollout (from ``serving.models.NAME.rollout``).

    Attributes:
        steps: Challenger shares in percent, ascending (e.g. ``(5, 25, 50, 100)``).
        window_s: How long a step is watched before it may advance.
        max_error_rate: SLO: highest challenger error rate.
        max_p99_ms: SLO: highest challenger p99 latency.
        max_prediction_shift: Guard: highest |mean challenger − mean champion| score.
        max_disagreement: Guard: highest shadow label disagreement.
        min_requests: Challenger requests needed in a window before a step can advance.
    """

    steps: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)
    window_s: float = 300.0
    max_error_rate: float = 0.01
    max_p99_ms: float = 100.0
    max_prediction_shift: float | None = None
    max_disagreement: float | None = None
    min_requests: int = 100

    @property
    def min_evidence(self) -> int:
        """Requests needed before a breach can be called (fewer for a fast rollback, never fewer than 10)."""
        return max(10, min(self.min_requests, 50)) if self.min_requests else 1


@dataclass(frozen=True)
class StepDecision:
    """What to do with a rollout now.

    Attributes:
        action: ``hold`` (keep watching), ``advance`` (next step), ``complete`` (promote) or ``rollback``.
        weight: The challenger share after the decision.
        step_index: The step index after the decision.
        reason: Why, in words (recorded in the audit trail).
    """

    action: Literal["hold", "advance", "complete", "rollback"]
    weight: float
    step_index: int
    reason: str


def breaches(rules: StepRules, challenger: VariantStats, champion: VariantStats) -> list[str]:
    """Every SLO or guard the challenger breaks in this window (empty when within bounds or too little evidence)."""
    if challenger.requests < rules.min_evidence:
        return []
    found = []
    if challenger.error_rate > rules.max_error_rate:
        found.append(f"error rate {challenger.error_rate:.3%} > {rules.max_error_rate:.3%} over {challenger.requests} requests")
    if not math.isnan(challenger.p99_ms) and challenger.p99_ms > rules.max_p99_ms:
        found.append(f"p99 latency {challenger.p99_ms:.1f} ms > {rules.max_p99_ms:.1f} ms")
    if rules.max_prediction_shift is not None and not (math.isnan(challenger.mean_prediction) or math.isnan(champion.mean_prediction)):
        shift = abs(challenger.mean_prediction - champion.mean_prediction)
        if shift > rules.max_prediction_shift:
            found.append(f"mean prediction shift {shift:.4f} > {rules.max_prediction_shift:.4f}")
    if rules.max_disagreement is not None and not math.isnan(challenger.disagreement) and challenger.disagreement > rules.max_disagreement:
        found.append(f"shadow disagreement {challenger.disagreement:.3%} > {rules.max_disagreement:.3%}")
    return found


def evaluate_step(
    rules: StepRules,
    step_index: int,
    step_elapsed_s: float,
    challenger: VariantStats,
    champion: VariantStats,
    *,
    progressive: bool = True,
) -> StepDecision:
    """Decide whether a rollout holds, advances, completes or rolls back.

    A breach of any SLO or guard rolls back at once, whatever the step. Otherwise a
    step advances only after its full window *and* enough challenger requests; the
    last step completing means promote.

    Args:
        rules: Bounds and steps.
        step_index: Index into ``rules.steps`` of the current step.
        step_elapsed_s: Seconds since the current step began.
        challenger: The challenger's window statistics.
        champion: The champion's, for the guards that compare.
        progressive: False for fixed-weight modes (A/B, shadow, blue/green): only rollbacks are decided.
    """
    steps = rules.steps or (100.0,)
    idx = min(max(step_index, 0), len(steps) - 1)
    weight = steps[idx]
    broken = breaches(rules, challenger, champion)
    if broken:
        return StepDecision("rollback", 0.0, idx, "; ".join(broken))
    if not progressive:
        return StepDecision("hold", weight, idx, "within SLOs")
    if step_elapsed_s < rules.window_s:
        return StepDecision(
            "hold", weight, idx, f"step {idx + 1}/{len(steps)} at {weight:g}%: {step_elapsed_s:.0f}/{rules.window_s:.0f} s watched"
        )
    if challenger.requests < rules.min_requests:
        return StepDecision("hold", weight, idx, f"only {challenger.requests}/{rules.min_requests} challenger requests in the window")
    if idx + 1 >= len(steps):
        return StepDecision("complete", 100.0, idx, f"all {len(steps)} steps within SLOs")
    nxt = steps[idx + 1]
    return StepDecision(
        "advance",
        nxt,
        idx + 1,
        f"step {idx + 1} at {weight:g}% within SLOs (errors {challenger.error_rate:.2%}, p99 {challenger.p99_ms:.1f} ms): advance to {nxt:g}%",
    )
