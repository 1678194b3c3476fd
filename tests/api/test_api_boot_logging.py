"""A healthy fresh server logs no ERROR at start-up: no predictions yet is a normal state (Issue 14)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from serving_helpers import FakeRegistry, make_workspace, native_runtime, serving_spec

from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.serving.server import ModelServer

pytestmark = pytest.mark.anyio


async def test_fresh_server_with_the_monitor_logs_no_error_at_boot(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ws = make_workspace(tmp_path / "proj")
    assert not ws.lake.exists(ws.spec.monitoring.table)  # fresh: nothing served, so no prediction log table
    reg = FakeRegistry()
    reg.add("flights", "1", lambda: native_runtime(0, "flights", "1"), "champion")
    spec = serving_spec(models={"flights": {}}, poll_interval_s=0)
    server = ModelServer(ws, spec, loader=reg.load, resolver=reg.resolve)
    app = create_app(ws, model_server=server, api_keys=ApiKeys({"k": ("op", "operator")}), serving_spec=spec, monitor_schedule=True)
    caplog.set_level(logging.DEBUG)
    try:
        async with app.router.lifespan_context(app):
            scheduler = app.state.monitor_scheduler
            assert scheduler is not None and scheduler.models == ["flights"]
            for _ in range(500):
                if scheduler.passes and server.ready:
                    break
                await asyncio.sleep(0.02)
            assert scheduler.passes >= 1 and server.ready
            assert scheduler.last_error is None
    finally:
        ws.close()
    loud = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert loud == []
    assert any("no predictions logged yet" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("steward.monitoring"))
