"""The CLI, the HTTP API and MCP reach the same steward.ops function for the same operation, and answer alike.

Each test wraps one ops function in a recorder that calls the real one, drives every edge, and
checks that each call arrived with the same arguments and that each edge reported the same outcome.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from serving_helpers import FakeRegistry, FakeRuntime, make_workspace, serving_spec
from typer.testing import CliRunner

import steward.ops._models
from steward import ops
from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.cli.app import app as cli
from steward.llm.agent import ToolGate
from steward.mcp import build_server
from steward.serving.server import ModelServer
from steward.workspace import Workspace

pytestmark = pytest.mark.anyio

ADMIN = {"Authorization": "Bearer admin-key"}
KEYS = ApiKeys({"admin-key": ("admin1", "admin")})


class Recorder:
    """Records each call's arguments, then runs the real operation."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self.real(*args, **kwargs)


@asynccontextmanager
async def api(ws: Workspace, server: ModelServer) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(ws, model_server=server, api_keys=KEYS, serving_spec=server.serving)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(500):
                if server.ready:
                    break
                await asyncio.sleep(0.01)
            yield client


def fake_server(ws: Workspace | None) -> ModelServer:
    reg = FakeRegistry()
    reg.add("m", "1", lambda: FakeRuntime("m", "1"), "champion")
    reg.add("m", "2", lambda: FakeRuntime("m", "2", offset=0.8), "challenger")
    spec = serving_spec(models={"m": {}}, poll_interval_s=0, prediction_log={"enabled": False})
    return ModelServer(ws, spec, loader=reg.load, resolver=reg.resolve)


async def test_promote_is_one_operation_for_the_cli_the_api_and_mcp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = make_workspace(tmp_path / "p", "models:\n  m: {}")
    promote = Recorder(ops.promote)
    # the package's name and the defining module's (which move_alias calls for champion moves) are one function
    monkeypatch.setattr(ops, "promote", promote)
    monkeypatch.setattr(steward.ops._models, "promote", promote)
    args = {"model": "m", "version": 7, "reason": "ship it"}

    res = CliRunner().invoke(cli, ["--spec", str(ws.spec.spec_path), "promote", "m", "7", "--reason", "ship it"])
    cli_code = getattr(res.exception, "code", None)

    async with api(ws, fake_server(ws)) as client:
        r = await client.post("/v1/admin/models/m/aliases", json={"alias": "champion", "version": 7, "reason": "ship it"}, headers=ADMIN)
    api_code = r.json()["code"]

    token, _ = ToolGate(ws).grant_call("promote_model", args, admin="user:root")
    async with Client(build_server(ws, role="admin")) as client:
        out = await client.call_tool("promote_model", {**args, "approval_token": token})
    text = "".join(getattr(c, "text", "") for c in out.content)
    mcp_code = json.loads(text[text.index("{") :])["code"]

    assert [(a[1:], k["reason"]) for a, k in promote.calls] == [(("m", 7), "ship it")] * 3
    assert [k["actor"] for _, k in promote.calls] == [None, "api:admin1", "mcp:stdio"]  # the CLI's default: $STEWARD_ACTOR or the OS user
    # the same failure (no such version), told by each edge in its own form: exit code 8, HTTP 404, a tool error
    assert (cli_code, res.exit_code != 0, r.status_code, out.is_error) == ("not_found", True, 404, True)
    assert api_code == mcp_code == "not_found"
    ws.close()


async def test_rollout_start_is_one_operation_for_the_cli_and_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start = Recorder(ops.start_rollout)
    monkeypatch.setattr(ops, "start_rollout", start)
    monkeypatch.setattr(
        "steward.serving.registry_link.resolve_version", lambda ws, name, alias: {"champion": "1", "challenger": "2"}[alias]
    )
    verified: list[tuple[str, int]] = []  # the registry is faked here: record the verification instead of downloading
    monkeypatch.setattr("steward.ops._rollouts.verify_version", lambda ws, name, version: verified.append((name, version)))
    shell = make_workspace(tmp_path / "cli", "models:\n  m: {}")
    res = CliRunner().invoke(cli, ["--spec", str(shell.spec.spec_path), "rollout", "start", "m", "--mode", "shadow", "--json"])
    assert res.exit_code == 0, res.output
    from_cli = json.loads(res.output)

    ws = make_workspace(tmp_path / "api", "models:\n  m: {}")
    server = fake_server(ws)
    async with api(ws, server) as client:
        r = await client.post("/v1/admin/rollouts/m/start", json={"mode": "shadow"}, headers=ADMIN)
        assert r.status_code == 200, r.text
        applied = server.models["m"].policy.mode
    from_api = r.json()["rollout"]

    assert [a[1] for a, _ in start.calls] == ["m", "m"]
    assert [{k: v for k, v in a[2].items() if v is not None} for a, _ in start.calls] == [{"mode": "shadow"}] * 2
    assert start.calls[1][1]["server"] is server.live  # the API hands over its running server, which applied it
    keys = ("mode", "state", "weight", "champion_version", "challenger_version")
    assert [from_cli[k] for k in keys] == [from_api[k] for k in keys] == ["shadow", "running", 0.0, "1", "2"]
    assert applied == "shadow"
    assert verified == [("m", 2)]  # the CLI verifies through the registry (the API through its server's own loader)
    shell.close()
    ws.close()


async def test_describe_never_sends_exception_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.store.db.utils

    from steward.backends.factory import open_model_registry

    ws = make_workspace(tmp_path / "p", "models:\n  m: {}")
    server = fake_server(ws)
    async with api(ws, server) as client:
        unknown = (await client.get("/v1/serving/models/m", headers=ADMIN)).json()
        # the registry goes away (nothing listens on its port): the loaded state is still described
        monkeypatch.setattr(mlflow.store.db.utils, "MAX_RETRY_COUNT", 1)
        storage = ws.spec.storage.model_copy(update={"tracking_uri": "postgresql://postgres@127.0.0.1:1/unreachable"})
        ws.__dict__["model_registry"] = open_model_registry(ws.spec.model_copy(update={"storage": storage}))
        r = await client.get("/v1/serving/models/m", headers=ADMIN)
        missing = await client.get("/v1/serving/models/ghost", headers=ADMIN)
    assert unknown["registry"] == {"state": "not_found", "code": "not_found"} and unknown["versions"] == []
    down = r.json()
    assert r.status_code == 200 and down["champion"]["version"] == "1" and down["versions"] == [] and down["aliases"] == {}
    assert down["registry"] == {"state": "unavailable", "code": "backend.unavailable"}
    assert "127.0.0.1:1" not in r.text and "unreachable" not in r.text  # the error is logged, never sent
    assert missing.status_code == 404 and missing.json()["code"] == "serving.model_not_served"
    ws.close()
