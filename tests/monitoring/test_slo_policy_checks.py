"""SLO policies record one coherent check per burn alert; quality SLOs get an error budget from labelled predictions."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from monitor_helpers import NOW, flights_like, write_labels, write_log

from steward.monitoring import MonitorWindow, ReferenceProfile, SloStatus, evaluate, evaluate_policies, prometheus_rules
from steward.spec import MonitorPolicySpec, SloSpec
from steward.workspace import Workspace

EMPTY = ReferenceProfile(columns={})


def _status(rates: dict[str, float | None], firing: list[str], events: int = 1000) -> tuple[SloStatus, SloSpec]:
    spec = SloSpec(name="latency", objective=0.99, threshold_ms=50)
    return SloStatus("latency", "latency", 0.99, 0.9, events, -9.0, rates, firing), spec


def _slo_checks(policy: MonitorPolicySpec, rates: dict[str, float | None], firing: list[str]) -> tuple[dict[str, object], list[object]]:
    checks, actions = evaluate([policy], EMPTY, EMPTY, model="m", slos=[_status(rates, firing)])
    return {c.column: c for c in checks}, list(actions)


def test_one_check_per_burn_alert_with_its_factor_and_the_min_of_both_windows() -> None:
    policy = MonitorPolicySpec(name="burn", on="slo", detector="all", action="rollback", min_rows=1)
    # fast: the long window burns at 20x but the short one only at 7x: no page; slow: 7x and 8x > 6x: a ticket
    checks, actions = _slo_checks(policy, {"1h": 20.0, "5m": 7.0, "6h": 7.0, "30m": 8.0}, ["slow_burn"])
    assert set(checks) == {"latency:1h/5m", "latency:6h/30m"}
    fast, slow = checks["latency:1h/5m"], checks["latency:6h/30m"]
    assert (fast.value, fast.threshold, fast.status, fast.detector) == (7.0, 14.4, "ok", "fast_burn")  # type: ignore[attr-defined]
    assert (slow.value, slow.threshold, slow.status, slow.detector) == (7.0, 6.0, "breach", "slow_burn")  # type: ignore[attr-defined]
    for c in checks.values():  # a stored check never contradicts itself
        assert (c.status == "breach") == (c.value > c.threshold)  # type: ignore[attr-defined]
    assert len(actions) == 1 and actions[0].columns == ("latency:6h/30m",)  # type: ignore[attr-defined]
    reason = actions[0].reason  # type: ignore[attr-defined]
    assert "latency:6h/30m" in reason and "7" in reason and "6x" in reason and "crossed 1.0" not in reason


def test_policy_threshold_scales_the_factors_and_warn_warns_early() -> None:
    rates = {"1h": 20.0, "5m": 16.0, "6h": 7.0, "30m": 8.0}
    # threshold 2: roll back only at twice the workbook factors (28.8x, 12x); warn at half of them (7.2x, 3x)
    policy = MonitorPolicySpec(name="burn", on="slo", detector="latency", threshold=2.0, warn=0.5, action="rollback", min_rows=1)
    checks, actions = _slo_checks(policy, rates, ["fast_burn", "slow_burn"])
    fast, slow = checks["latency:1h/5m"], checks["latency:6h/30m"]
    assert fast.threshold == pytest.approx(28.8) and fast.warn == pytest.approx(7.2) and fast.status == "warn"  # type: ignore[attr-defined]
    assert slow.threshold == pytest.approx(12.0) and slow.warn == pytest.approx(3.0) and slow.status == "warn"  # type: ignore[attr-defined]
    assert actions == []
    # the defaults (threshold unset) are the workbook factors: both alerts fire
    default = MonitorPolicySpec(name="burn", on="slo", detector="all", action="rollback", min_rows=1)
    checks, actions = _slo_checks(default, rates, ["fast_burn", "slow_burn"])
    assert {c.status for c in checks.values()} == {"breach"} and len(actions) == 1  # type: ignore[attr-defined]


def test_burn_checks_without_events_or_below_min_rows() -> None:
    policy = MonitorPolicySpec(name="burn", on="slo", detector="all", action="rollback", min_rows=1)
    checks, _ = _slo_checks(policy, {"1h": 3.0, "5m": None, "6h": 2.0, "30m": 1.0}, [])
    assert checks["latency:1h/5m"].value is None and checks["latency:1h/5m"].status == "no_data"  # type: ignore[attr-defined]
    assert checks["latency:6h/30m"].value == 1.0 and checks["latency:6h/30m"].status == "ok"  # type: ignore[attr-defined]
    few = MonitorPolicySpec(name="burn", on="slo", detector="all", action="rollback", min_rows=5000)
    checks, actions = _slo_checks(few, {"1h": 30.0, "5m": 30.0, "6h": 30.0, "30m": 30.0}, ["fast_burn", "slow_burn"])
    assert {c.status for c in checks.values()} == {"insufficient_data"} and actions == []  # type: ignore[attr-defined]


def test_policy_alert_summaries_name_the_real_levels(monitor_ws: Workspace) -> None:
    rules = {r["alert"]: r for r in prometheus_rules(monitor_ws.spec)["groups"][0]["rules"]}
    burn = rules["StewardLatencyBurn"]["annotations"]["summary"]
    assert "14.4" in burn and "6" in burn and "crossed" not in burn
    assert "below 0.01" in rules["StewardPredictionKs"]["annotations"]["summary"]  # a p-value breaches below its threshold
    assert "below 0.7" in rules["StewardQuality"]["annotations"]["summary"]
    assert "0.2" in rules["StewardFeatureDrift"]["annotations"]["summary"]


def test_quality_slo_has_an_error_budget_and_burn_rates_from_labelled_predictions(monitor_ws: Workspace) -> None:
    quality = SloSpec(name="quality", sli="quality", objective=0.7, metric="accuracy")
    monitor_ws.spec = monitor_ws.spec.with_overrides({"monitoring.slos": [*monitor_ws.spec.monitoring.slos, quality]})
    # labelled predictions up to the label horizon (now - 1d delay); today's are not judged yet
    older = flights_like(900, seed=41, start=NOW - timedelta(days=3), span=timedelta(days=2) - timedelta(minutes=1))
    write_log(monitor_ws, older)
    write_labels(monitor_ws, older)
    write_log(monitor_ws, flights_like(300, seed=42, start=NOW - timedelta(hours=20), span=timedelta(hours=19)))
    v = evaluate_policies(monitor_ws, "flights", now=NOW, record=False, notify=False)
    q = next(s for s in v.details["slos"] if s["name"] == "quality")

    horizon = NOW - timedelta(days=1)
    correct = (older["score"] >= 0.5) == (older["late"] == 1)
    ts = older["ts"]
    assert q["kind"] == "quality" and q["events"] == 900
    assert q["sli"] == pytest.approx(float(correct.mean()))
    assert q["error_budget_remaining"] == pytest.approx(1 - (1 - float(correct.mean())) / 0.3)
    for w, span in {"6h": timedelta(hours=6), "1h": timedelta(hours=1)}.items():
        inside = np.asarray(correct.filter((ts > horizon - span) & (ts <= horizon)))
        assert inside.size > 0
        assert q["burn_rates"][w] == pytest.approx((1 - inside.mean()) / 0.3), w
    # the quality SLO's burn alerts are policy checks like the others
    cols = {c.column for c in v.checks if c.policy == "latency_burn"}
    assert {"quality:1h/5m", "quality:6h/30m", "latency:1h/5m", "availability:6h/30m"} <= cols


def test_quality_slo_floor_check_when_min_value_is_set(monitor_ws: Workspace) -> None:
    quality = SloSpec(name="quality", sli="quality", objective=0.7, metric="roc_auc", min_value=0.99)
    monitor_ws.spec = monitor_ws.spec.with_overrides({"monitoring.slos": [*monitor_ws.spec.monitoring.slos, quality]})
    older = flights_like(600, seed=43, start=NOW - timedelta(days=2), span=timedelta(hours=23))
    write_log(monitor_ws, older)
    write_labels(monitor_ws, older)
    v = evaluate_policies(
        monitor_ws, "flights", MonitorWindow(start=NOW - timedelta(days=1), end=NOW), version="1", now=NOW, record=False, notify=False
    )
    floor = next(c for c in v.checks if c.column == "quality:roc_auc")
    assert floor.threshold == 0.99 and floor.direction == "below" and floor.value is not None and floor.value < 0.99
    assert floor.status == "breach" and floor.n_window == 600
    assert floor.value == pytest.approx(v.details["performance"]["all"]["roc_auc"])
