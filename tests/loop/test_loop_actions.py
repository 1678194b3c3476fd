"""Monitor actions carried out by ``run_pending``: shadow-then-promote through the polling driver, and rollback."""

from __future__ import annotations

import uuid
from pathlib import Path

from loop_helpers import TABLE, CountingBuilder, log_predictions, make_frame, make_loop_workspace, noisy, seed_champion

from steward._primitives import utcnow
from steward.loop import PollingDriver, rollout_state, run_pending
from steward.monitoring import evaluate_policies, list_actions
from steward.registry import get_alias_version
from steward.serving.rollout import RolloutController


def test_shadow_then_promote_and_rollback_actions(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"shadow_{unique}"
    ws = make_loop_workspace(tmp_path, name, shared_tracking_uri, drift_action="shadow-then-promote")
    seed_champion(ws, noisy(make_frame(2000, seed=40), 0.35))
    end = log_predictions(ws, make_frame(600, seed=41), 1, wind_shift=25.0)
    [action] = evaluate_policies(ws, name, now=end, notify=False).actions
    assert action.action == "shadow-then-promote"
    ws.lake.write(TABLE, make_frame(3000, seed=42), mode="overwrite")

    # the policy says canary, the action asks for shadow: the server only rolls shadows back, the loop promotes
    # after one clean step window (1 s here), polling the store as it does against a live server
    [res] = run_pending(ws, model=name, driver=PollingDriver(poll_s=0.2), builder=CountingBuilder(), timeout_s=30)
    assert res.outcome == "promoted", res.reason
    st = rollout_state(RolloutController(ws), res.steps[3].outputs["rollout_id"])
    assert st.mode == "shadow" and st.state == "completed" and [s["action"] for s in st.steps] == ["start", "promote"]
    assert res.steps[3].inputs["policy"]["mode"] == "shadow"
    assert get_alias_version(ws, name, "champion") == 2
    assert next(a for a in list_actions(ws, name) if a["action_id"] == action.action_id)["status"] == "done"

    # a pending rollback action (as an SLO policy records it) rolls the registry back to the previous champion
    aid = uuid.uuid4().hex
    ws.metadata.execute(
        "INSERT INTO monitor_actions (action_id, verdict_id, model, version, policy, action, reason, status, created_at, updated_at, details) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (aid, "v-test", name, "2", "latency_burn", "rollback", "latency SLO burning 14x", "pending", utcnow(), utcnow(), "{}"),
    )
    assert run_pending(ws, model=name, builder=CountingBuilder()) == []  # no loop needed
    assert get_alias_version(ws, name, "champion") == 1
    row = next(a for a in list_actions(ws, name) if a["action_id"] == aid)
    assert row["status"] == "done"
