"""The self-healing loop end to end: drift → retrain → gate → canary → new champion; a worse challenger; a breach."""

from __future__ import annotations

from pathlib import Path

import pytest
from loop_helpers import (
    ERRORING,
    HEALTHY,
    TABLE,
    CountingBuilder,
    StatsDriver,
    audit_actions,
    inverted_before_cut,
    log_predictions,
    make_frame,
    make_loop_workspace,
    noisy,
    seed_champion,
)

from steward.errors import SpecError
from steward.loop import PollingDriver, loop_history, rollout_state, run_loop, run_pending
from steward.monitoring import evaluate_policies, list_actions, profile_for_model
from steward.registry import alias_history, get_alias_version, list_models
from steward.serving.rollout import RolloutController


def test_drift_triggers_retrain_and_a_better_challenger_becomes_champion(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"drift_{unique}"
    ws = make_loop_workspace(tmp_path, name, shared_tracking_uri)
    champion = seed_champion(ws, noisy(make_frame(2000, seed=3), 0.35))
    assert get_alias_version(ws, name, "champion") == champion == 1

    # drift injected: served traffic whose wind speeds and carriers moved away from the reference
    end = log_predictions(ws, make_frame(600, seed=4), champion, wind_shift=25.0)
    verdict = evaluate_policies(ws, name, now=end, notify=False)
    retrain = [a for a in verdict.actions if a.action == "retrain"]
    assert retrain and "wind_speed" in retrain[0].columns
    assert [a["status"] for a in list_actions(ws, name)] == ["pending"]

    # new, clean data lands; the loop consumes the pending action
    new_version = ws.lake.write(TABLE, make_frame(3000, seed=5), mode="overwrite")
    builder = CountingBuilder()
    driver = StatsDriver(HEALTHY)
    results = run_pending(ws, model=name, driver=driver, builder=builder, lock_ttl_s=10)

    assert len(results) == 1
    res = results[0]
    assert res.outcome == "promoted", res.reason
    assert res.challenger_version == 2 and res.champion_version == 2
    assert res.trigger.startswith(f"monitor:retrain:wind_drift:{retrain[0].action_id}")
    assert [s.step for s in res.steps] == ["training_set", "train", "gate", "rollout", "decide"]
    assert res.steps[0].outputs["data_versions"] == {TABLE: new_version}
    assert builder.calls == [None]  # built once, from the newest version
    assert res.steps[2].outputs["passed"] is True
    assert [d.action for d in driver.decisions] == ["advance", "complete"]

    # registry: v2 is champion, v1 is previous; the rollout completed through the canary steps
    assert get_alias_version(ws, name, "champion") == 2 and get_alias_version(ws, name, "previous") == 1
    rid = res.steps[3].outputs["rollout_id"]
    st = rollout_state(RolloutController(ws), rid)
    assert st.state == "completed" and [s["action"] for s in st.steps] == ["start", "advance", "promote"]

    # the monitor action is done, the challenger's reference profile is stored for monitoring
    action = next(a for a in list_actions(ws, name) if a["action_id"] == retrain[0].action_id)
    assert action["status"] == "done" and "promoted" in action["details"]["notes"][-1]["note"]
    profile = profile_for_model(ws, name, 2)
    assert set(profile.columns) == {"origin", "carrier", "hour", "distance", "wind_speed"} and profile.prediction is not None
    assert res.steps[1].outputs["profile"] == "logged with the training run"

    # every step is in the audit trail, in order, with its inputs and outputs
    assert audit_actions(ws, res.loop_id) == ["loop.start", "loop.training_set", "loop.train", "loop.gate", "loop.rollout", "loop.promote"]
    train_entry = next(e for e in ws.audit.entries(model=name, action="loop.train") if e.action == "loop.train")
    payload = train_entry.payload
    assert payload["outputs"]["version"]["value"] == 2 and payload["inputs"]["data_versions"]["value"] == {TABLE: new_version}
    assert ws.audit.verify().ok

    hist = loop_history(ws, name)
    assert [(h.state, h.outcome) for h in hist] == [("finished", "promoted")]
    assert hist[0].context["rollout_id"] == rid and hist[0].context["gate"]["passed"] is True

    # nothing left to do
    assert run_pending(ws, model=name, driver=driver, builder=builder) == []


def test_worse_challenger_loses_the_gate_and_the_champion_stays(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"worse_{unique}"
    ws = make_loop_workspace(tmp_path, name, shared_tracking_uri)
    seed_champion(ws, make_frame(2500, seed=6))
    ws.lake.write(TABLE, inverted_before_cut(make_frame(2500, seed=7)), mode="overwrite")
    driver = StatsDriver(HEALTHY)

    res = run_loop(ws, model=name, trigger="manual", driver=driver, builder=CountingBuilder())

    assert res.outcome == "champion_kept"
    assert res.reason.startswith("challenger v2 lost to champion v1 on: ") and "metric.roc_auc" in res.reason
    assert res.champion_version == 1 and get_alias_version(ws, name, "champion") == 1
    assert [s.step for s in res.steps] == ["training_set", "train", "gate"]
    assert res.steps[-1].status == "failed"
    assert driver.decisions == [] and RolloutController(ws).latest(name) is None  # never rolled out
    assert [c.action for c in alias_history(ws, name) if c.alias == "champion"] == ["promote"]  # only the seed promotion
    assert audit_actions(ws, res.loop_id)[-2:] == ["loop.gate", "loop.champion_kept"]
    assert loop_history(ws, name)[0].outcome == "champion_kept"


def test_breach_during_canary_rolls_back_and_records_the_reason(
    tmp_path: Path, shared_tracking_uri: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import steward.monitoring._profile as profiles

    name = f"breach_{unique}"
    ws = make_loop_workspace(tmp_path, name, shared_tracking_uri)
    seed_champion(ws, noisy(make_frame(2000, seed=8), 0.35))
    ws.lake.write(TABLE, make_frame(3000, seed=9), mode="overwrite")
    driver = StatsDriver(ERRORING)
    # a training stage that logs no reference profile: the loop builds and stores one itself
    monkeypatch.setattr(profiles, "_fetch_from_registry", lambda *a, **k: None)

    res = run_loop(ws, model=name, trigger="manual", driver=driver, builder=CountingBuilder())

    profile = profile_for_model(ws, name, 2)
    assert res.steps[1].outputs["profile"] == str(profiles.profile_path(ws, name, 2))
    assert profile.meta["loop_id"] == res.loop_id and profile.prediction is not None and profile.n_rows == 2000

    assert res.outcome == "rolled_back", res.reason
    assert "error rate 10.000% > 2.000%" in res.reason and "champion v1 unchanged" in res.reason
    assert res.steps[2].outputs["passed"] is True  # the gate passed; traffic found the problem
    assert [d.action for d in driver.decisions] == ["rollback"]
    assert get_alias_version(ws, name, "champion") == 1 and get_alias_version(ws, name, "previous") is None
    st = RolloutController(ws).latest(name)
    assert st is not None and st.state == "rolled_back" and "error rate" in (st.reason or "")
    assert audit_actions(ws, res.loop_id)[-1] == "loop.rollback"
    assert [m.version for m in list_models(ws, name)] == [2, 1]


def test_rollout_policy_required_unless_no_rollout_and_timeout_aborts(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"norollout_{unique}"
    ws = make_loop_workspace(tmp_path / "a", name, shared_tracking_uri, rollout=False)
    with pytest.raises(SpecError) as info:
        run_loop(ws, model=name, builder=CountingBuilder())
    assert info.value.code == "loop.no_rollout_policy" and "--no-rollout" in str(info.value)
    assert loop_history(ws, name) == []

    # --no-rollout: a first model is gated on absolute thresholds and promoted directly
    ws.lake.write(TABLE, make_frame(2500, seed=10))
    res = run_loop(ws, model=name, rollout=False, builder=CountingBuilder())
    assert res.outcome == "promoted" and res.champion_version == 1
    assert res.steps[3].status == "skipped" and "--no-rollout" in res.steps[3].note

    # a rollout nobody drives (no serving process) times out and is aborted cleanly
    other = f"timeout_{unique}"
    ws2 = make_loop_workspace(tmp_path / "b", other, shared_tracking_uri)
    seed_champion(ws2, noisy(make_frame(2000, seed=11), 0.35))
    ws2.lake.write(TABLE, make_frame(3000, seed=12), mode="overwrite")
    ticks = iter(range(1000))
    polling = PollingDriver(poll_s=1, clock=lambda: float(next(ticks)), sleep=lambda s: None)
    res2 = run_loop(ws2, model=other, driver=polling, builder=CountingBuilder(), timeout_s=3)
    assert res2.outcome == "aborted" and "did not finish within 3 s" in res2.reason
    assert get_alias_version(ws2, other, "champion") == 1
    assert audit_actions(ws2, res2.loop_id)[-1] == "loop.abort"
    st = RolloutController(ws2).latest(other)
    assert st is not None and st.state == "aborted"
