"""One loop per model: a second loop, in another process, is refused while the first runs (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
from loop_helpers import CountingBuilder, audit_actions, hold_loop, make_loop_workspace

from steward.errors import LockHeld, ValidationFailed
from steward.features.training_set import TrainingSet
from steward.loop import lock_name, loop_history, run_loop
from steward.workspace import Workspace


def _wait_running(ws: Workspace, name: str, proc: multiprocessing.process.BaseProcess) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = loop_history(ws, name)
        if runs and runs[0].state == "running":
            return
        assert proc.is_alive(), f"the first loop's process died (exit code {proc.exitcode})"
        time.sleep(0.1)
    raise AssertionError("the first loop never started")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_second_loop_in_another_process_is_refused(
    backend: str, tmp_path: Path, shared_tracking_uri: str, unique: str, request: pytest.FixtureRequest
) -> None:
    metadata_url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    name = f"lock_{unique}"
    ws = make_loop_workspace(tmp_path, name, shared_tracking_uri, metadata_url=metadata_url, rollout=False)
    release = tmp_path / "release"
    proc = multiprocessing.get_context("spawn").Process(target=hold_loop, args=(str(tmp_path), str(release)))
    proc.start()
    try:
        _wait_running(ws, name, proc)
        with pytest.raises(LockHeld) as info:
            run_loop(ws, model=name, trigger="second", rollout=False, builder=CountingBuilder())
        err = info.value
        assert err.code == "metadata.lock_held" and err.exit_code == 6
        assert f"/{proc.pid}/" in err.message and lock_name(name) in err.message  # names the holder process
        assert "loop.refused" in audit_actions(ws)
        runs = loop_history(ws, name)
        assert len(runs) == 1 and runs[0].trigger == "manual" and runs[0].state == "running"  # the refused loop left no run
    finally:
        release.touch()
        proc.join(60)
    assert proc.exitcode == 0
    runs = loop_history(ws, name)
    assert [(r.state, r.outcome) for r in runs] == [("aborted", "aborted")]
    assert "released by the test" in (runs[0].reason or "")
    assert ws.metadata.fetchone("SELECT owner FROM locks WHERE name = ?", (lock_name(name),)) is None  # released on the way out
    ws.close()


def test_lock_is_heartbeated_through_a_step_longer_than_its_ttl(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"beat_{unique}"
    ws = make_loop_workspace(tmp_path, name, shared_tracking_uri, rollout=False)
    seen: dict[str, bool] = {}

    def slow(_ws: Workspace, *, pins: dict[str, int] | None = None) -> TrainingSet:
        time.sleep(1.2)  # three TTLs: without the heartbeat the lock would have expired
        seen["intruder"] = ws.metadata.try_lock(lock_name(name), "elsewhere/1/intruder", 5.0)
        raise ValidationFailed("stop here")

    with pytest.raises(ValidationFailed):
        run_loop(ws, model=name, rollout=False, builder=slow, lock_ttl_s=0.4)
    assert seen == {"intruder": False}
    assert ws.metadata.try_lock(lock_name(name), "elsewhere/1/intruder", 5.0)  # released when the loop ended
    [run] = loop_history(ws, name)
    assert run.outcome == "aborted" and run.reason == "validation.failed: stop here"
