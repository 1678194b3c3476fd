"""The pure router and rollout rules: no HTTP, no clock, no I/O."""

from __future__ import annotations

import math
import random

import pytest

from steward.serving.router import RoutePolicy, StepRules, VariantStats, bucket, evaluate_step, percentile, route


def test_canary_weights_match_share_without_key() -> None:
    rng = random.Random(1)
    policy = RoutePolicy("canary", 10.0, "r1")
    served = [route(policy, None, rng.random()).serve for _ in range(20_000)]
    share = served.count("challenger") / len(served)
    assert 0.09 < share < 0.11


def test_canary_sticky_by_key_and_monotone_when_weight_grows() -> None:
    keys = [f"user-{i}" for i in range(5000)]
    at5 = {k: route(RoutePolicy("canary", 5.0, "r1"), k, 0.99).serve for k in keys}
    # the same key always gets the same answer, whatever the random draw
    assert all(route(RoutePolicy("canary", 5.0, "r1"), k, 0.0).serve == at5[k] for k in keys[:500])
    at25 = {k: route(RoutePolicy("canary", 25.0, "r1"), k, 0.5).serve for k in keys}
    # raising the weight only moves callers from champion to challenger
    assert all(at25[k] == "challenger" for k in keys if at5[k] == "challenger")
    share = sum(v == "challenger" for v in at25.values()) / len(keys)
    assert 0.22 < share < 0.28


def test_a_new_rollout_reshuffles_sticky_assignment() -> None:
    keys = [f"k{i}" for i in range(2000)]
    a = [route(RoutePolicy("canary", 50.0, "r1"), k, 0).serve for k in keys]
    b = [route(RoutePolicy("canary", 50.0, "r2"), k, 0).serve for k in keys]
    assert a != b


def test_ab_assignment_is_exclusive_and_sticky() -> None:
    policy = RoutePolicy("ab", 50.0, "exp")
    seen: dict[str, set[str]] = {}
    for _ in range(3):
        for i in range(1000):
            r = route(policy, f"u{i}", random.random())
            seen.setdefault(f"u{i}", set()).add(r.variant_label)
    assert all(len(v) == 1 for v in seen.values())  # every key in exactly one variant
    labels = [next(iter(v)) for v in seen.values()]
    assert set(labels) == {"A", "B"}
    assert 0.4 < labels.count("B") / len(labels) < 0.6


def test_shadow_never_serves_the_challenger() -> None:
    policy = RoutePolicy("shadow", 100.0, "s")
    for i in range(1000):
        r = route(policy, f"k{i}" if i % 2 else None, random.random())
        assert r.serve == "champion" and r.shadow


def test_bluegreen_switch_and_switch_back_are_instant() -> None:
    green = RoutePolicy("bluegreen", 100.0, "bg")
    assert {route(green, f"k{i}", random.random()).serve for i in range(200)} == {"challenger"}
    blue = green.with_weight(0.0)
    assert {route(blue, f"k{i}", random.random()).serve for i in range(200)} == {"champion"}
    assert route(blue, None, 0.0).variant_label == "blue"
    assert route(green, None, 0.0).variant_label == "green"


def test_none_policy_is_champion_only() -> None:
    assert route(RoutePolicy(), "x", 0.0).serve == "champion"
    assert not route(RoutePolicy(), "x", 0.0).shadow


def test_bucket_is_stable_and_in_range() -> None:
    assert bucket("abc", "s") == bucket("abc", "s")
    assert all(0 <= bucket(f"k{i}") < 100 for i in range(1000))


def test_percentile_nearest_rank() -> None:
    assert percentile(list(range(1, 101)), 99) == 99
    assert math.isnan(percentile([], 99))


RULES = StepRules(steps=(5.0, 25.0, 50.0, 100.0), window_s=60.0, max_error_rate=0.01, max_p99_ms=50.0, min_requests=100)


def healthy(n: int = 200) -> VariantStats:
    return VariantStats.from_samples([5.0] * n, 0, [0.3] * n)


def test_progressive_steps_advance_only_after_window_and_enough_requests() -> None:
    assert evaluate_step(RULES, 0, 30.0, healthy(), healthy()).action == "hold"  # window not over
    few = evaluate_step(RULES, 0, 61.0, healthy(50), healthy())
    assert few.action == "hold" and "50/100" in few.reason
    weights = []
    idx = 0
    for _ in range(3):
        d = evaluate_step(RULES, idx, 61.0, healthy(), healthy())
        assert d.action == "advance"
        idx = d.step_index
        weights.append(d.weight)
    assert weights == [25.0, 50.0, 100.0]
    done = evaluate_step(RULES, idx, 61.0, healthy(), healthy())
    assert done.action == "complete" and done.weight == 100.0


def test_breach_of_error_rate_rolls_back_with_reason_at_any_step() -> None:
    bad = VariantStats.from_samples([5.0] * 100, 5, [0.3] * 100)
    d = evaluate_step(RULES, 2, 1.0, bad, healthy())
    assert d.action == "rollback" and d.weight == 0.0
    assert "error rate" in d.reason and "5.000%" in d.reason


def test_breach_of_p99_rolls_back() -> None:
    slow = VariantStats.from_samples([5.0] * 90 + [80.0] * 10, 0, [0.3] * 100)
    d = evaluate_step(RULES, 0, 100.0, slow, healthy())
    assert d.action == "rollback" and "p99 latency 80.0 ms" in d.reason


def test_guard_prediction_shift_and_disagreement() -> None:
    rules = StepRules(max_prediction_shift=0.1, max_disagreement=0.2, min_requests=10, window_s=1)
    shifted = VariantStats.from_samples([1.0] * 20, 0, [0.9] * 20)
    assert "mean prediction shift" in evaluate_step(rules, 0, 5, shifted, healthy()).reason
    disagree = VariantStats.from_samples([1.0] * 20, 0, [0.3] * 20, [True] * 10 + [False] * 10)
    d = evaluate_step(rules, 0, 5, disagree, healthy(), progressive=False)
    assert d.action == "rollback" and "disagreement" in d.reason


def test_no_breach_called_on_too_little_evidence() -> None:
    one_failure = VariantStats.from_samples([5.0], 1, [math.nan])
    assert evaluate_step(RULES, 0, 10.0, one_failure, healthy()).action == "hold"


@pytest.mark.parametrize("mode_progressive", [False])
def test_fixed_modes_only_hold_or_roll_back(mode_progressive: bool) -> None:
    assert evaluate_step(RULES, 0, 1e9, healthy(), healthy(), progressive=mode_progressive).action == "hold"
