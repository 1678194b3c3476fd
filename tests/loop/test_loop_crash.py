"""A loop killed mid-way resumes from its last completed step (no retrain), or aborts cleanly when it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from loop_helpers import HEALTHY, TABLE, CountingBuilder, StatsDriver, audit_actions, make_frame, make_loop_workspace, noisy, seed_champion

from steward._primitives import utcnow
from steward.errors import ValidationFailed
from steward.features.training_set import TrainingSet
from steward.loop import lock_name, loop_history, run_loop
from steward.loop._state import create_run, save_run
from steward.registry import get_alias_version, list_models
from steward.serving.rollout import RolloutController
from steward.workspace import Workspace

HELPERS = str(Path(__file__).resolve().parent)


def _crash(project: Path, fault: str, *, rollout: bool) -> subprocess.CompletedProcess[str]:
    """Run ``steward loop``'s library call in a child process that dies abruptly at ``fault``."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {HELPERS!r})
        from loop_helpers import CountingBuilder
        from steward.loop import run_loop
        from steward.workspace import open_workspace
        ws = open_workspace({str(project)!r})
        run_loop(ws, trigger="nightly", rollout={rollout!r}, builder=CountingBuilder(), lock_ttl_s=600)
        print("loop finished")
        """
    )
    env = {**os.environ, "STEWARD_FAULT": fault}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180, check=False)


def test_crash_after_registering_resumes_without_retraining(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"crash_{unique}"
    ws = make_loop_workspace(tmp_path, name, shared_tracking_uri, rollout=False)
    seed_champion(ws, noisy(make_frame(2000, seed=20), 0.35))
    data_version = ws.lake.write(TABLE, make_frame(3000, seed=21), mode="overwrite")

    proc = _crash(tmp_path, "loop_train_registered", rollout=False)
    assert proc.returncode == 1 and "loop finished" not in proc.stdout, proc.stderr[-2000:]
    [run] = loop_history(ws, name)
    assert run.state == "running" and run.step == "train" and run.done == ["training_set"]
    assert "challenger_version" not in run.context  # died between registering and saving
    assert [m.version for m in list_models(ws, name)] == [2, 1]
    held = ws.metadata.fetchone("SELECT owner FROM locks WHERE name = ?", (lock_name(name),))
    assert held is not None  # the dead process still "holds" the lock, for 600 s

    builder = CountingBuilder()
    res = run_loop(ws, model=name, builder=builder)  # taken over at once: the owner process is dead

    assert res.resumed and res.loop_id == run.loop_id and res.trigger == "nightly"
    assert res.outcome == "promoted", res.reason
    assert [m.version for m in list_models(ws, name)] == [2, 1]  # not retrained: the registered v2 was found by its loop tag
    assert builder.calls == []  # nothing rebuilt: the reference profile was logged with the training run
    assert run.context["data_versions"] == {TABLE: data_version}
    assert res.challenger_version == 2 and get_alias_version(ws, name, "champion") == 2
    assert [s.step for s in res.steps] == ["training_set", "train", "gate", "rollout", "decide"]
    assert res.steps[1].note == "recovered" and res.steps[3].status == "skipped"
    actions = audit_actions(ws, run.loop_id)
    assert actions[:2] == ["loop.start", "loop.training_set"] and "loop.resume" in actions and actions[-1] == "loop.promote"
    assert loop_history(ws, name)[0].state == "finished"


def test_crash_during_rollout_resumes_watching_the_same_rollout(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"crashro_{unique}"
    ws = make_loop_workspace(tmp_path, name, shared_tracking_uri)
    seed_champion(ws, noisy(make_frame(2000, seed=22), 0.35))
    ws.lake.write(TABLE, make_frame(3000, seed=23), mode="overwrite")

    proc = _crash(tmp_path, "loop_after_rollout", rollout=True)
    assert proc.returncode == 1, proc.stderr[-2000:]
    [run] = loop_history(ws, name)
    assert run.state == "running" and run.done == ["training_set", "train", "gate", "rollout"]
    ctl = RolloutController(ws)
    started = ctl.active(name)
    assert started is not None and started.rollout_id == run.context["rollout_id"] and started.challenger_version == "2"

    builder, driver = CountingBuilder(), StatsDriver(HEALTHY)
    res = run_loop(ws, model=name, builder=builder, driver=driver)

    assert res.resumed and res.outcome == "promoted", res.reason
    assert builder.calls == [] and [m.version for m in list_models(ws, name)] == [2, 1]
    assert [d.action for d in driver.decisions] == ["advance", "complete"]
    rows = ws.metadata.fetchall("SELECT rollout_id, state FROM rollouts WHERE model_name = ?", (name,))
    assert rows == [{"rollout_id": started.rollout_id, "state": "completed"}]  # the same rollout, finished
    assert get_alias_version(ws, name, "champion") == 2


def test_resume_aborts_cleanly_when_the_challenger_is_gone(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"gone_{unique}"
    ws = make_loop_workspace(tmp_path, name, shared_tracking_uri, rollout=False)
    ws.metadata.migrate()
    # a loop left by a dead process after training v7, which has since been deleted from the registry
    run = create_run(ws.metadata, name, "nightly", "elsewhere/1/dead", {"rollout": False, "rollout_spec": None, "timeout_s": 60})
    run.context.update(done=["training_set", "train"], challenger_version=7, data_versions={TABLE: 3})
    run.context["steps"] = [
        {"step": s, "status": "done", "started_at": utcnow(), "finished_at": utcnow(), "inputs": {}, "outputs": {}, "note": ""}
        for s in ("training_set", "train")
    ]
    run.step = "gate"
    save_run(ws.metadata, run)
    builder = CountingBuilder()

    res = run_loop(ws, model=name, builder=builder)

    assert res.resumed and res.outcome == "aborted"
    assert res.reason == f"could not resume loop {run.loop_id}: its challenger v7 no longer exists in the registry"
    assert builder.calls == [] and [s.step for s in res.steps] == ["training_set", "train"]
    assert [(r.state, r.outcome) for r in loop_history(ws, name)] == [("aborted", "aborted")]
    assert audit_actions(ws, run.loop_id) == ["loop.resume", "loop.abort"]
    # the next loop starts afresh
    assert ws.metadata.fetchone("SELECT owner FROM locks WHERE name = ?", (lock_name(name),)) is None


def test_unexpected_error_leaves_the_loop_resumable_and_a_steward_error_aborts_it(
    tmp_path: Path, shared_tracking_uri: str, unique: str
) -> None:
    name = f"bug_{unique}"
    ws = make_loop_workspace(tmp_path, name, shared_tracking_uri, rollout=False)
    calls: list[str] = []

    def buggy(_ws: Workspace, *, pins: dict[str, int] | None = None) -> TrainingSet:
        calls.append("buggy")
        raise RuntimeError("a bug, or the network")

    def refusing(_ws: Workspace, *, pins: dict[str, int] | None = None) -> TrainingSet:
        calls.append("refusing")
        raise ValidationFailed("no labelled rows yet")

    with pytest.raises(RuntimeError):
        run_loop(ws, model=name, trigger="nightly", rollout=False, builder=buggy)
    [run] = loop_history(ws, name)
    assert run.state == "running" and run.step == "training_set"  # left for the next loop to resume
    assert ws.metadata.fetchone("SELECT owner FROM locks WHERE name = ?", (lock_name(name),)) is None

    with pytest.raises(ValidationFailed):
        run_loop(ws, model=name, trigger="other", builder=refusing)
    assert calls == ["buggy", "refusing"]
    [run] = loop_history(ws, name)  # the same loop, resumed, then aborted with the error
    assert (run.trigger, run.state, run.outcome, run.reason) == ("nightly", "aborted", "aborted", "validation.failed: no labelled rows yet")
    assert audit_actions(ws, run.loop_id) == ["loop.start", "loop.resume", "loop.abort"]
