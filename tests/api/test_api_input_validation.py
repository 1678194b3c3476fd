"""Predict validation errors as problem+json: every bad field an object with its row, on both request paths."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from serving_helpers import FakeRegistry, native_runtime, row, serving_spec

from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.errors import ValidationFailed
from steward.serving.server import ModelServer

pytestmark = pytest.mark.anyio

KEYS = ApiKeys({"op-key": ("op1", "operator")})
OP = {"X-API-Key": "op-key"}


def _registry() -> FakeRegistry:
    reg = FakeRegistry()
    reg.add("flights", "1", lambda: native_runtime(0, "flights", "1"), "champion")
    return reg


def _store_rejecting(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The online store's own answer to rows without a request-time column (as features.store raises it)."""
    if any("dep_time" not in r for r in rows):
        raise ValidationFailed("bad feature request: dep_time: missing", details={"errors": ["dep_time: missing"]})
    return [{"tailnum": r["tailnum"], **row(3)} for r in rows]


async def _predict(server: ModelServer, body: dict[str, Any]) -> httpx.Response:
    app = create_app(None, model_server=server, api_keys=KEYS, serving_spec=server.serving)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(500):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.02)
            return await client.post("/v1/models/flights/predict", json=body, headers=OP)


def _assert_problem(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "validation.failed"
    errors = body["errors"]
    assert errors
    for e in errors:
        assert isinstance(e, dict), f"error is not an object: {e!r}"
        assert isinstance(e["row"], int) and isinstance(e["field"], str) and isinstance(e["message"], str)
        assert isinstance(e["type"], str)
    return list(errors)


async def test_entity_path_errors_are_objects_naming_row_and_field() -> None:
    spec = serving_spec(models={"flights": {"entity_keys": ["tailnum"]}}, poll_interval_s=0, prediction_log={"enabled": False})
    server = ModelServer(None, spec, loader=_registry().load, resolver=_registry().resolve, online_features=_store_rejecting)
    rows = [{**row(0), "tailnum": "N1"}, {"tailnum": "N2"}, {"tailnum": "N3"}]
    errors = _assert_problem(await _predict(server, {"rows": rows}))
    # row 0 is complete (no lookup); rows 1 and 2 needed the store, which wants dep_time
    assert [(e["row"], e["field"], e["type"]) for e in errors] == [(1, "rows.1.dep_time", "missing"), (2, "rows.2.dep_time", "missing")]
    single = _assert_problem(await _predict(server, {"row": {"tailnum": "N2"}}))
    assert [(e["row"], e["field"]) for e in single] == [(0, "row.dep_time")]


async def test_full_row_errors_carry_their_row_index() -> None:
    spec = serving_spec(models={"flights": {}}, poll_interval_s=0, prediction_log={"enabled": False})
    server = ModelServer(None, spec, loader=_registry().load, resolver=_registry().resolve)
    errors = _assert_problem(await _predict(server, {"rows": [row(0), row(1, distance="far"), row(2, bogus=1)]}))
    assert sorted((e["row"], e["field"], e["type"]) for e in errors) == [
        (1, "rows.1.distance", "type_error.number"),
        (2, "rows.2.bogus", "extra_forbidden"),
    ]
