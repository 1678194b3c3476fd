"""Rollout operations called as a library: from a script (the servers pick them up), and with a running server that applies them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from serving_helpers import FakeRegistry, FakeRuntime, make_workspace, row, serving_spec

from steward import ops
from steward.errors import Conflict, NotFound, StewardError, ValidationFailed
from steward.serving.rollout import RolloutController
from steward.serving.server import ModelServer
from steward.workspace import Workspace

ALIASES = {("flights", "champion"): "3", ("flights", "challenger"): "4", ("same", "champion"): "5", ("same", "challenger"): "5"}


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A project whose serving section holds a canary policy; registry lookups come from a fixed alias map."""
    monkeypatch.setattr("steward.serving.registry_link.resolve_version", lambda ws, name, alias: ALIASES.get((name, alias)))
    # the registry is a fixed alias map here (no artifacts to verify); verification itself is tested in test_verify_then_commit.py
    monkeypatch.setattr("steward.ops._rollouts.verify_version", lambda ws, name, version: None)
    return make_workspace(tmp_path, "models:\n  flights:\n    rollout: {mode: canary, steps: [10, 50, 100], step_window_s: 60}")


def test_start_weight_abort_and_status_without_a_server(ws: Workspace) -> None:
    st = ops.start_rollout(ws, "flights", {"steps": [20, 100], "sticky_key": None}, actor="alice")
    assert (st.mode, st.weight, st.champion_version, st.challenger_version, st.actor) == ("canary", 20.0, "3", "4", "user:alice")
    assert st.spec.step_window_s == 60  # the spec's policy, overridden field by field
    with pytest.raises(Conflict) as running:
        ops.start_rollout(ws, "flights", actor="alice")
    assert running.value.code == "rollout.running"

    st = ops.set_rollout_weight(ws, "flights", 50, actor="bob")
    assert st.weight == 50 and st.steps == [] and st.reason == "set to 50%"
    st = ops.abort_rollout(ws, "flights", reason="p99 too high", actor="bob")
    assert st.state == "aborted" and [s["action"] for s in st.steps] == ["start", "set_weight", "abort"]
    status = ops.rollout_status(ws, "flights")
    assert status.rollout is not None and status.rollout.rollout_id == st.rollout_id
    assert (status.routing, status.stats) == (None, {})  # no server: nothing live to report
    with pytest.raises(NotFound) as none:
        ops.abort_rollout(ws, "flights")
    assert none.value.code == "rollout.not_running"


def test_refused_starts_write_nothing(ws: Workspace) -> None:
    ctl = RolloutController(ws)
    with pytest.raises(ValidationFailed) as bad:
        ops.start_rollout(ws, "flights", {"mode": "nope"})
    assert bad.value.message == "invalid rollout policy: mode" and bad.value.details["errors"][0]["field"] == "mode"
    with pytest.raises(NotFound) as missing:
        ops.start_rollout(ws, "unknown")  # not in serving.models: the default policy, but no challenger
    assert missing.value.code == "rollout.no_challenger"
    with pytest.raises(Conflict) as same:
        ops.start_rollout(ws, "same")
    assert same.value.code == "rollout.same_version"
    assert [ctl.latest(m) for m in ("flights", "unknown", "same")] == [None, None, None]
    assert ops.rollout_status(ws, "flights").rollout is None
    with pytest.raises(NotFound) as never:
        ops.rollout_status(ws, "flights", must_exist=True)
    assert never.value.code == "rollout.none"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ModelServer]:
    reg = FakeRegistry()
    reg.add("m", "1", lambda: FakeRuntime("m", "1", offset=0.1), "champion")
    reg.add("m", "2", lambda: FakeRuntime("m", "2", offset=0.9), "challenger")
    policy = {"mode": "canary", "steps": [30, 100], "auto": False}
    spec = serving_spec(models={"m": {"rollout": policy}}, poll_interval_s=0, prediction_log={"enabled": False})
    srv = ModelServer(make_workspace(tmp_path / "live"), spec, loader=reg.load, resolver=reg.resolve)
    await srv.start()
    for _ in range(500):
        if srv.ready:
            break
        await asyncio.sleep(0.01)
    try:
        yield srv
    finally:
        await srv.stop()


async def versions(server: ModelServer, n: int = 20) -> set[str]:
    return {(await server.predict("m", [row(i)], key=f"k{i}")).version for i in range(n)}


@pytest.mark.anyio
async def test_a_running_server_applies_each_step_before_the_call_returns(server: ModelServer) -> None:
    ws, live = server.ws, server.live
    st = await asyncio.to_thread(ops.start_rollout, ws, "m", {"mode": "bluegreen"}, actor="test", server=live)
    assert st.mode == "bluegreen" and st.challenger_version == "2"
    assert await versions(server) == {"2"}  # no poll, no reload: green serves at once
    await asyncio.to_thread(ops.set_rollout_weight, ws, "m", 0, server=live)
    assert await versions(server) == {"1"}
    status = await asyncio.to_thread(ops.rollout_status, ws, "m", server=live)
    assert status.routing == {"mode": "bluegreen", "weight": 0.0} and status.stats["champion"]["requests"] == 20
    done = await asyncio.to_thread(ops.abort_rollout, ws, "m", reason="done", server=live)
    assert done.state == "aborted" and server.models["m"].challenger is None and server.models["m"].policy.mode == "none"
    evaluation = await asyncio.to_thread(ops.evaluate_rollout, live, "m")
    assert evaluation.rollout is None and set(evaluation.stats) == {"champion"}
    report = await asyncio.to_thread(ops.reload_models, live, "m")
    assert report == {"champion": "1", "challenger": None, "changes": {}}
    assert server.metrics.rollout_events.labels("m", "start")._value.get() == 1


@pytest.mark.anyio
async def test_refused_live_calls_change_nothing(server: ModelServer) -> None:
    ws, live = server.ws, server.live
    assert ws is not None
    with pytest.raises(NotFound) as unserved:
        await asyncio.to_thread(ops.start_rollout, ws, "ghost", server=live)
    assert unserved.value.code == "serving.model_not_served"
    # on the server's own event loop a blocking call would deadlock: it is refused before anything is written
    with pytest.raises(StewardError) as wrong:
        ops.start_rollout(ws, "m", server=live)
    assert wrong.value.code == "serving.wrong_thread"
    with pytest.raises(StewardError):
        ops.promote(ws, "m", 2, reason="from the loop", server=live)
    assert RolloutController(ws).latest("m") is None and server.models["m"].challenger is None
    await server.stop()
    with pytest.raises(Conflict) as stopped:
        await asyncio.to_thread(ops.reload_models, live)
    assert stopped.value.code == "serving.not_running"
