"""The background monitor inside the API server: started with the app, visible in /metrics and /v1/monitor."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from monitor_helpers import flights_like, write_log

from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.workspace import Workspace

pytestmark = pytest.mark.anyio

KEYS = ApiKeys({"view-key": ("viewer1", "viewer"), "op-key": ("op1", "operator")})
VIEW = {"Authorization": "Bearer view-key"}
OP = {"Authorization": "Bearer op-key"}


async def test_serve_runs_the_monitor_and_publishes_its_gauges(monitor_ws: Workspace) -> None:
    # a drifted window logged in the last hours, so the default (latest 1d) window holds it
    now = datetime.now(UTC)
    write_log(monitor_ws, flights_like(600, seed=21, shift=40.0, start=now - timedelta(hours=6), span=timedelta(hours=5)))
    monitor_ws.spec = monitor_ws.spec.with_overrides({"monitoring.schedule.interval_s": 3600.0})  # one pass at start-up, the next on demand
    app = create_app(monitor_ws, api_keys=KEYS, monitor_schedule=True)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            status: dict[str, object] = {}
            for _ in range(600):
                status = (await client.get("/v1/monitor/status", headers=VIEW)).json()
                if status.get("passes"):
                    break
                await asyncio.sleep(0.05)
            assert status["running"] is True and status["passes"] == 1 and status["last_error"] is None
            flights = status["models"]["flights"]  # type: ignore[index]
            assert flights["status"] == "breach" and "retrain" in flights["actions"]
            # the drift gauges land in the server's own registry, so /metrics shows them
            metrics = (await client.get("/metrics", headers=VIEW)).text
            assert 'steward_monitor_policy_status{model="flights",policy="feature_drift"} 2.0' in metrics
            # a viewer may look but not trigger a pass; an operator may
            assert (await client.post("/v1/monitor/run", headers=VIEW)).status_code == 403
            r = await client.post("/v1/monitor/run", headers=OP)
            assert r.status_code == 200 and r.json()["verdicts"][0]["status"] == "breach"
            assert (await client.get("/v1/monitor/status", headers=VIEW)).json()["passes"] == 2
        scheduler = app.state.monitor_scheduler
    assert not scheduler.running  # stopped with the app


async def test_without_the_flag_no_monitor_thread_starts(monitor_ws: Workspace) -> None:
    app = create_app(monitor_ws, api_keys=KEYS)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get("/v1/monitor/status", headers=VIEW)
    assert r.status_code == 404 and r.json()["code"] == "monitor.not_running"
    assert app.state.monitor_scheduler is None
