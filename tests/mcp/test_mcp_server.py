"""The MCP server with the SDK's own client: in memory, over stdio, and over streamable HTTP with bearer keys."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import recorded, recording_registry
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from steward.api.auth import ApiKeys
from steward.llm.agent import Approvals, ToolGate
from steward.mcp import build_server, http_app
from steward.workspace import Workspace, open_workspace

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio."""
    return "asyncio"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Workspace]:
    """A project with a runbook, a model card on disk and an audit entry."""
    (tmp_path / "steward.yaml").write_text("project: mcp\n")
    (tmp_path / "docs" / "runbooks").mkdir(parents=True)
    (tmp_path / "docs" / "runbooks" / "drift.md").write_text("# Feature drift\n\nCheck the drift report, then propose a retrain.\n")
    ws = open_workspace(tmp_path)
    cards = ws.root / "cards" / "flights_delay"
    cards.mkdir(parents=True)
    (cards / "v1.md").write_text("# flights_delay v1\n\nroc_auc 0.71\n")
    (cards / "v1.json").write_text(json.dumps({"model": "flights_delay", "version": 1}))
    ws.audit.append("registry.alias", "model:flights_delay@1", actor="alice", model="flights_delay")
    yield ws
    ws.close()


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def test_in_memory_tools_resources_and_gate(project: Workspace) -> None:
    server = build_server(project, role="viewer")
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"list_models", "drift_report", "audit_search", "rollback_model", "promote_model"} <= set(tools)
        schema = tools["promote_model"].input_schema
        assert set(schema["required"]) == {"model", "version", "reason"} and "approval_token" in schema["properties"]
        assert tools["rollback_model"].annotations.destructive_hint is True
        assert tools["audit_search"].annotations.read_only_hint is True

        found = await client.call_tool("audit_search", {"model": "flights_delay"})
        assert not found.is_error
        body = json.loads(_text(found))
        assert body["status"] == "ok" and [e["actor"] for e in body["result"]["entries"]] == ["user:alice"]

        refused = await client.call_tool("rollback_model", {"model": "flights_delay", "reason": "slow"})
        assert refused.is_error and "tool.not_allowed" in _text(refused)
        bad = await client.call_tool("drift_report", {"model": "x; DROP TABLE"})
        assert bad.is_error

        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"steward://runbooks/drift", "steward://models/flights_delay/cards/1"} <= uris
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        assert "steward://models/{model}/cards/{version}" in templates
        book = await client.read_resource("steward://runbooks/drift")
        assert "propose a retrain" in book.contents[0].text
        card = await client.read_resource("steward://models/flights_delay/cards/1")
        assert "roc_auc 0.71" in card.contents[0].text
    calls = project.audit.entries(action="agent.tool_call")
    assert calls and calls[-1].payload["details"]["source"] == "mcp" and calls[-1].actor == "mcp:stdio"


async def test_in_memory_write_needs_an_approval_token(project: Workspace, tmp_path: Path) -> None:
    log = tmp_path / "writes.jsonl"
    server = build_server(project, role="admin", gate=ToolGate(project, recording_registry(log)))
    args = {"model": "flights_delay", "reason": "too slow"}
    async with Client(server) as client:
        first = await client.call_tool("rollback_model", args)
        assert first.is_error and "agent.approval_required" in _text(first)
        request_id = json.loads(_text(first).split(": ", 1)[1])["approval_request_id"]
        token, _ = Approvals(project).grant(request_id, admin="bob")
        wrong = await client.call_tool("rollback_model", {**args, "reason": "other", "approval_token": token})
        assert wrong.is_error and "another call" in _text(wrong)
        assert recorded(log) == []
        ran = await client.call_tool("rollback_model", {**args, "approval_token": token})
        assert not ran.is_error and json.loads(_text(ran))["result"] == {"done": "rollback_model"}
        assert Approvals(project).get(request_id).status == "used"
        assert [(w["tool"], w["arguments"], w["actor"]) for w in recorded(log)] == [("rollback_model", args, "mcp:stdio")]
        again = await client.call_tool("rollback_model", {**args, "approval_token": token})
        assert again.is_error and "already used" in _text(again) and len(recorded(log)) == 1


async def test_stdio_with_the_sdk_client(project: Workspace) -> None:
    env = {**os.environ, "STEWARD_SPEC": str(project.spec.spec_path)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "steward", "mcp", "--transport", "stdio"], env=env)
    async with Client(params) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "audit_search" in names
        result = await client.call_tool("audit_search", {"action": "registry.alias"})
        assert not result.is_error and json.loads(_text(result))["result"]["entries"][0]["subject"] == "model:flights_delay@1"
        book = await client.read_resource("steward://runbooks/drift")
        assert "Feature drift" in book.contents[0].text


def _serve(app: Any) -> tuple[Any, threading.Thread, int]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    return server, thread, port


async def test_streamable_http_needs_a_bearer_key_and_uses_its_role(project: Workspace) -> None:
    import httpx
    from mcp.client.streamable_http import streamable_http_client

    keys = ApiKeys({"k-view": ("viewer-key", "viewer"), "k-admin": ("admin-key", "admin")})
    server, thread, port = _serve(http_app(project, api_keys=keys))
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        async with httpx.AsyncClient() as raw:
            r = await raw.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            assert r.status_code == 401
        async with (
            httpx.AsyncClient(headers={"Authorization": "Bearer k-view"}) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            assert "audit_search" in {t.name for t in (await client.list_tools()).tools}
            refused = await client.call_tool("propose_rollback", {"model": "flights_delay", "reason": "slow"})
            assert refused.is_error and "role viewer" in _text(refused)
        async with (
            httpx.AsyncClient(headers={"Authorization": "Bearer k-admin"}) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            needs = await client.call_tool("rollback_model", {"model": "flights_delay", "reason": "slow"})
            assert needs.is_error and "agent.approval_required" in _text(needs)
        who = {e.actor for e in project.audit.entries(action="agent.refused")}
        assert {"mcp:viewer-key", "mcp:admin-key"} <= who
    finally:
        server.should_exit = True
        thread.join(timeout=10)
