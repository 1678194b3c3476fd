"""Monitoring and the self-healing loop called as a library: a pass finds drift, the loop carries its action out."""

from __future__ import annotations

import uuid
from pathlib import Path

from loop_helpers import TABLE, CountingBuilder, log_predictions, make_frame, make_loop_workspace, noisy, seed_champion

from steward import ops
from steward.monitoring import list_actions, list_verdicts
from steward.registry import get_alias_version


def test_monitor_pass_then_loop_then_a_triggered_loop(tmp_path: Path, shared_tracking_uri: str) -> None:
    name = f"ops_loop_{uuid.uuid4().hex[:8]}"
    ws = make_loop_workspace(tmp_path, name, shared_tracking_uri, rollout=False)
    assert ops.run_monitor(ws) == []  # nothing logged yet: nothing to judge
    seed_champion(ws, noisy(make_frame(2000, seed=40), 0.35))
    log_predictions(ws, make_frame(600, seed=41), 1, wind_shift=25.0)

    [verdict] = ops.run_monitor(ws)  # every model in the prediction log
    assert verdict.model == name and verdict.status == "breach"
    assert [a.action for a in verdict.actions] == ["retrain"]
    assert [v["verdict_id"] for v in list_verdicts(ws, name)] == [verdict.verdict_id]  # recorded

    ws.lake.write(TABLE, make_frame(3000, seed=42), mode="overwrite")
    builder = CountingBuilder()
    [healed] = ops.run_loop(ws, model=name, rollout=False, builder=builder)
    assert healed.outcome == "promoted", healed.reason
    assert healed.trigger.startswith("monitor:") and get_alias_version(ws, name, "champion") == 2
    assert [a["status"] for a in list_actions(ws, name) if a["action"] == "retrain"] == ["done"]
    assert ops.run_loop(ws, model=name, rollout=False, builder=builder) == []  # nothing pending any more

    [manual] = ops.run_loop(ws, model=name, trigger="manual: weekly retrain", rollout=False, builder=builder)
    assert manual.trigger == "manual: weekly retrain" and manual.outcome in ("promoted", "champion_kept")
    assert len(builder.calls) == 2
    ws.close()
