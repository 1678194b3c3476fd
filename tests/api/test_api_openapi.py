"""The OpenAPI document and the error edge: a Problem schema on every documented error, problem+json for the
framework's own 404/405/400, auth checked before the body is read, and model names/aliases refused at the edge."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from serving_helpers import FakeRegistry, FakeRuntime, make_workspace, serving_spec
from starlette.routing import Route
from test_api_serving import ADMIN, KEYS, running

from steward.api._openapi import GATEWAY_PATHS, is_protocol_path
from steward.api.app import create_app
from steward.backends.mlflow_errors import translate_mlflow_error
from steward.errors import ValidationFailed
from steward.serving.server import ModelServer

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"
# routes anyone may call without a key: the dashboard's sign-in form and sign-out
PUBLIC_MUTATIONS = {("POST", "/login"), ("POST", "/logout")}


def _app(tmp_path: Path) -> Any:
    reg = FakeRegistry()
    reg.add("m", "1", lambda: FakeRuntime("m", "1", offset=0.3), "champion")
    ws = make_workspace(tmp_path / "proj")
    spec = serving_spec(models={"m": {}}, poll_interval_s=0, prediction_log={"enabled": False})
    server = ModelServer(ws, spec, loader=reg.load, resolver=reg.resolve)
    return create_app(ws, model_server=server, api_keys=KEYS, serving_spec=spec)


def _native_operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(p, m, op) for p, ops in doc["paths"].items() if not is_protocol_path(p) for m, op in ops.items()]


def test_every_native_error_is_documented_as_problem_json(tmp_path: Path) -> None:
    doc = _app(tmp_path).openapi()
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code", "hint", "instance", "errors"} <= set(problem["properties"])
    assert set(problem["properties"]["errors"]["items"]["properties"]) == {"row", "field", "message", "type"}
    ops = _native_operations(doc)
    assert len(ops) >= 20
    for path, method, op in ops:
        responses = op["responses"]
        errors = {int(s) for s in responses if s.isdigit() and int(s) >= 400}
        for status in errors:
            content = responses[str(status)].get("content", {})
            assert list(content) == [PROBLEM], (method, path, status)
            assert content[PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}, (method, path, status)
        if path == "/healthz":
            continue
        assert 503 in errors, (method, path)
        if path != "/readyz":
            assert {401, 403, 429} <= errors, (method, path)
            assert op["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}], (method, path)
        if method == "post":
            assert {400, 413, 422} <= errors, (method, path)
        if "{" in path:
            assert 404 in errors, (method, path)
    # no native operation documents FastAPI's own validation shape: nothing of theirs answers it
    assert "HTTPValidationError" not in str([op for _, _, op in ops])


def test_every_request_body_has_a_schema(tmp_path: Path) -> None:
    doc = _app(tmp_path).openapi()
    bodies = 0
    for path, method, op in _native_operations(doc):
        body = op.get("requestBody")
        if body is None:
            continue
        bodies += 1
        schema = body["content"]["application/json"]["schema"]
        assert schema.get("properties") or schema.get("$ref"), (method, path)
    for path in ("/v1/rag/ask", "/v1/agent/runs", "/v1/agent/approvals", "/v1/admin/sessions/revoke", "/v1/admin/models/{name}/aliases"):
        schema = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema["properties"], path
    assert bodies >= 12


async def test_framework_errors_are_problem_json_off_the_gateway(tmp_path: Path) -> None:
    async with running(_app(tmp_path)) as client:
        missing = await client.get("/v1/no/such/route", headers=ADMIN)
        assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
        assert missing.json()["code"] == "route.not_found" and missing.json()["instance"] == "/v1/no/such/route"
        wrong = await client.get("/v1/admin/reload", headers=ADMIN)
        assert wrong.status_code == 405 and wrong.headers["content-type"] == PROBLEM
        assert wrong.json()["code"] == "route.method_not_allowed" and wrong.headers["allow"] == "POST"
        # the gateway keeps the shape its OpenAI clients parse
        gateway = await client.get("/v1/chat/completions")
        assert gateway.status_code == 405 and gateway.headers["content-type"] == "application/json"
        assert gateway.json() == {"detail": "Method Not Allowed"}


def _routes(app: Any) -> list[tuple[str, set[str]]]:
    """(path, methods) of every route in ``app.routes``, through the routers FastAPI includes lazily."""
    out: list[tuple[str, set[str]]] = []
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)  # FastAPI >= 0.12x keeps included routers whole
        if contexts is not None:
            out += [(ctx.path, set(getattr(ctx.original_route, "methods", None) or ())) for ctx in contexts()]
        elif isinstance(route, APIRoute | Route):
            out.append((route.path, set(route.methods or ())))
    return out


def _mutating_routes(app: Any) -> list[tuple[str, str]]:
    return sorted(
        (method, path)
        for path, methods in _routes(app)
        for method in methods - {"GET", "HEAD", "OPTIONS"}
        if (method, path) not in PUBLIC_MUTATIONS
    )


async def test_no_key_is_401_before_the_body_is_read_on_every_mutating_route(tmp_path: Path) -> None:
    app = _app(tmp_path)
    routes = _mutating_routes(app)
    assert ("POST", "/v1/rag/ask") in routes and ("POST", "/v1/agent/runs") in routes and ("POST", "/v1/agent/approvals") in routes
    async with running(app) as client:
        for method, path in routes:
            if GATEWAY_PATHS.match(path):
                continue  # gateway keys are the gateway engineer's; its routes answer OpenAI's shape
            url = re.sub(r"\{[^}]+\}", "m", path)
            for body in (b"{not json", b'{"unexpected": [1, 2, 3]}'):
                r = await client.request(method, url, content=body, headers={"content-type": "application/json"})
                assert r.status_code == 401, (method, path, body, r.status_code, r.text)


async def test_model_names_and_aliases_the_registry_rejects_are_422_naming_the_field(tmp_path: Path) -> None:
    async with running(_app(tmp_path)) as client:
        body = {"alias": "champion", "version": 1, "reason": "r"}
        bad_name = await client.post("/v1/admin/models/a:b/aliases", json=body, headers=ADMIN)
        assert bad_name.status_code == 422 and bad_name.headers["content-type"] == PROBLEM
        assert [e["field"] for e in bad_name.json()["errors"]] == ["name"]
        for alias in ("bad alias!", "a:b", "latest", "v3", ""):
            r = await client.post("/v1/admin/models/m/aliases", json={**body, "alias": alias}, headers=ADMIN)
            assert r.status_code == 422, (alias, r.text)
            assert [e["field"] for e in r.json()["errors"]] == ["alias"], alias
        huge = await client.post("/v1/admin/models/m/aliases", json={**body, "version": 2**40}, headers=ADMIN)
        assert huge.status_code == 422 and [e["field"] for e in huge.json()["errors"]] == ["version"]
        # names the registry accepts get past the edge (here: the model has no version 1 registered)
        ok = await client.post("/v1/admin/models/m/aliases", json=body, headers=ADMIN)
        assert ok.status_code == 404 and ok.headers["content-type"] == PROBLEM
        assert (await client.post("/v1/admin/models/a:b/aliases", json=body)).status_code == 401


def test_mlflow_invalid_parameter_becomes_a_422_with_field_errors() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    exc = MlflowException("Invalid model name 'a:b'. Names cannot contain '/' or ':'.", error_code=INVALID_PARAMETER_VALUE)
    err = translate_mlflow_error(exc, what="reading model 'a:b'", uri="sqlite:///m.db")
    assert isinstance(err, ValidationFailed) and err.http_status == 422
    problem = err.to_problem()
    assert problem["status"] == 422 and problem["errors"][0]["message"].startswith("Invalid model name")
    assert set(problem["errors"][0]) == {"field", "message", "type"}
