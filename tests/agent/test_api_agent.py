"""The agent over HTTP: roles from API keys, runs, approvals granted by admins only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from agent_helpers import recorded, recording_registry

from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.llm.agent import Agent, ToolGate
from steward.workspace import Workspace

pytestmark = pytest.mark.anyio

KEYS = ApiKeys({"k-view": ("viewer-key", "viewer"), "k-op": ("operator-key", "operator"), "k-admin": ("admin-key", "admin")})
VIEW = {"Authorization": "Bearer k-view"}
OP = {"Authorization": "Bearer k-op"}
ADMIN = {"Authorization": "Bearer k-admin"}


async def test_runs_and_approvals_over_http(make_ws: Callable[..., Workspace], tmp_path: Path) -> None:
    ws = make_ws()
    log = tmp_path / "writes.jsonl"
    app = create_app(ws, api_keys=KEYS, agent=Agent(ws, gate=ToolGate(ws, recording_registry(log))))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.post("/v1/agent/runs", json={"task": "List the registered models."})).status_code == 401
        r = await client.post("/v1/agent/runs", json={"task": "Show the drift report for model flights_delay."}, headers=VIEW)
        assert r.status_code == 200, r.text
        run = r.json()
        assert run["status"] == "completed" and run["role"] == "viewer" and run["actor"] == "api:viewer-key"
        got = (await client.get(f"/v1/agent/runs/{run['run_id']}", headers=VIEW)).json()
        assert got["run_id"] == run["run_id"] and len(got["steps"]) == len(run["steps"])
        assert (await client.get("/v1/agent/runs/nope", headers=VIEW)).status_code == 404

        # a key cannot raise its own role
        r = await client.post("/v1/agent/runs", json={"task": "Roll back flights_delay because it is slow.", "role": "admin"}, headers=OP)
        assert r.status_code == 403 and r.json()["code"] == "agent.role_too_high"
        # an operator's allow-list has no write tools: the planner is not offered rollback_model and says so
        r = await client.post("/v1/agent/runs", json={"task": "Roll back flights_delay because it is slow."}, headers=OP)
        assert r.json()["status"] == "completed" and r.json()["steps"][0]["calls"] == []

        # an admin's write call waits for an approval
        task = {"task": "Roll back flights_delay because it is slow."}
        r = await client.post("/v1/agent/runs", json=task, headers=ADMIN)
        pending = r.json()["pending_approval"]
        assert r.json()["status"] == "needs_approval" and pending
        queue = (await client.get("/v1/agent/approvals?status=pending", headers=OP)).json()["approvals"]
        assert [a["request_id"] for a in queue] == [pending] and "token" not in str(queue)
        assert (await client.post("/v1/agent/approvals", json={"request_id": pending}, headers=OP)).status_code == 403
        g = await client.post("/v1/agent/approvals", json={"request_id": pending}, headers=ADMIN)
        assert g.status_code == 200 and g.json()["request"]["status"] == "granted"
        token = g.json()["token"]
        # the approved call runs once, spending the token
        assert recorded(log) == []
        r = await client.post("/v1/agent/runs", json={**task, "approval_tokens": [token]}, headers=ADMIN)
        calls = r.json()["steps"][0]["calls"]
        assert [(c["tool"], c["status"]) for c in calls] == [("rollback_model", "ok")] and r.json()["status"] == "completed"
        assert [w["arguments"]["model"] for w in recorded(log)] == ["flights_delay"]
        r = await client.post("/v1/agent/runs", json={**task, "approval_tokens": [token]}, headers=ADMIN)
        assert r.json()["status"] == "needs_approval" and "already used" in r.json()["answer"]
        assert len(recorded(log)) == 1
        bad = await client.post("/v1/agent/approvals", json={"tool": "list_models", "arguments": {}}, headers=ADMIN)
        assert bad.status_code == 422
