"""The serving HTTP API in-process (httpx ASGI transport): auth, validation, limits, readiness, reloads, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_helpers import FakeRegistry, FakeRuntime, make_workspace, native_runtime, row, serving_spec

from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.serving.predlog import PredictionLogger
from steward.serving.server import ModelServer

pytestmark = pytest.mark.anyio

KEYS = ApiKeys({"view-key": ("viewer1", "viewer"), "op-key": ("op1", "operator"), "admin-key": ("admin1", "admin")})
VIEW = {"Authorization": "Bearer view-key"}
OP = {"X-API-Key": "op-key"}
ADMIN = {"Authorization": "Bearer admin-key"}


class Written:
    """A prediction-log sink that keeps the Arrow tables."""

    def __init__(self) -> None:
        self.tables: list[Any] = []

    def __call__(self, tbl: Any) -> None:
        self.tables.append(tbl)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [r for t in self.tables for r in t.to_pylist()]


def build(
    tmp_path: Path, reg: FakeRegistry, models: dict[str, Any], *, sink: Written | None = None, ws: bool = True, **serving: Any
) -> tuple[Any, ModelServer]:
    spec = serving_spec(models=models, poll_interval_s=0, batching={"max_wait_ms": 1.0}, **serving)
    workspace = make_workspace(tmp_path / "proj") if ws else None
    plog = PredictionLogger(write=sink, flush_rows=1000, flush_interval_s=0.05) if sink is not None else None
    server = ModelServer(workspace, spec, loader=reg.load, resolver=reg.resolve, prediction_logger=plog)
    app = create_app(workspace, model_server=server, api_keys=KEYS, serving_spec=spec)
    return app, server


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def wait_ready(client: httpx.AsyncClient, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if (await client.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("server never became ready")


def fake_registry() -> FakeRegistry:
    reg = FakeRegistry()
    reg.add("flights", "1", lambda: native_runtime(0, "flights", "1"), "champion")
    reg.add("flights", "2", lambda: native_runtime(1, "flights", "2"))
    reg.add("other", "7", lambda: FakeRuntime("other", "7", offset=0.7), "champion")
    return reg


async def test_starts_without_models_and_reports_not_ready(tmp_path: Path) -> None:
    app, _ = build(tmp_path, FakeRegistry(), {})
    async with running(app) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["detail"] == "no model is configured"


async def test_readyz_before_and_after_load_and_multi_model(tmp_path: Path) -> None:
    reg = fake_registry()
    reg.down = True  # the registry is down at boot: not ready, but alive
    app, server = build(tmp_path, reg, {"flights": {}, "other": {}})
    async with running(app) as client:
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200
        r = await client.post("/v1/models/flights/predict", json={"row": row()}, headers=OP)
        assert r.status_code == 503 and r.json()["code"] == "serving.not_loaded"
        reg.down = False
        await server.refresh()
        await wait_ready(client)
        ready = (await client.get("/readyz")).json()
        assert ready["models"]["flights"]["version"] == "1" and ready["models"]["other"]["version"] == "7"
        a = (await client.post("/v1/models/flights/predict", json={"row": row()}, headers=OP)).json()
        b = (await client.post("/v1/models/other/predict", json={"row": row(3)}, headers=OP)).json()
        assert (a["model"], a["version"]) == ("flights", "1") and 0 < a["prediction"] < 1
        assert (b["model"], b["version"]) == ("other", "7") and b["prediction"] == pytest.approx(0.7 + 0.001 * row(3)["dep_hour"])
        listing = (await client.get("/v1/serving/models", headers=VIEW)).json()
        assert {m["name"]: m["version"] for m in listing["models"]} == {"flights": "1", "other": "7"}
        desc = (await client.get("/v1/serving/models/flights", headers=VIEW)).json()
        assert desc["champion"]["version"] == "1" and "carrier" in desc["input_schema"]["properties"]


async def test_auth_401_and_403_in_problem_json(tmp_path: Path) -> None:
    app, _ = build(tmp_path, fake_registry(), {"flights": {}})
    async with running(app) as client:
        await wait_ready(client)
        r = await client.post("/v1/models/flights/predict", json={"row": row()})
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "auth.unauthenticated"
        assert (
            await client.post("/v1/models/flights/predict", json={"row": row()}, headers={"Authorization": "Bearer nope"})
        ).status_code == 401
        r = await client.post("/v1/models/flights/predict", json={"row": row()}, headers=VIEW)
        assert r.status_code == 403 and r.json()["code"] == "auth.forbidden"
        assert (await client.get("/v1/serving/models", headers=VIEW)).status_code == 200
        assert (await client.get("/v1/serving/models")).status_code == 401
        assert (await client.post("/v1/admin/reload", headers=OP)).status_code == 403
        assert (await client.post("/v1/admin/reload", headers=ADMIN)).status_code == 200
        # an unauthenticated request with a bad body is still a 401, not a 422
        assert (await client.post("/v1/models/flights/predict", content=b"{nope")).status_code == 401


async def test_422_names_every_bad_field(tmp_path: Path) -> None:
    app, server = build(tmp_path, fake_registry(), {"flights": {}})
    async with running(app) as client:
        await wait_ready(client)
        bad = {"dep_hour": "eight", "distance": None, "carrier": 3, "surprise": 1}
        r = await client.post("/v1/models/flights/predict", json={"row": bad}, headers=OP)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        fields = {e["field"] for e in r.json()["errors"]}
        assert fields == {"row.dep_hour", "row.carrier", "row.surprise"}  # a null float is a missing value, not an error
        r = await client.post("/v1/models/flights/predict", content=b'{"rows": [{"dep_hour": 1e999}]}', headers=OP)
        assert r.status_code == 422
        r = await client.post("/v1/models/flights/predict", json={"rows": [row(), row(1, wind_speed=True)]}, headers=OP)
        assert [e["field"] for e in r.json()["errors"]] == ["rows.1.wind_speed"]
        r = await client.post("/v1/models/flights/predict", content=b'{"row": {', headers={**OP, "content-type": "application/json"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body"
        r = await client.post("/v1/models/flights/predict", json={"row": row(), "rows": [row()]}, headers=OP)
        assert r.status_code == 422
        r = await client.post("/v1/models/flights/predict", json={"rows": [row()], "extra": 1}, headers=OP)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "extra"
        assert (await client.post("/v1/models/nope/predict", json={"row": row()}, headers=OP)).status_code == 404
        # nothing invalid reached the model
        assert server.models["flights"].champion is not None
        assert server.models["flights"].champion.batcher.stats.rows == 0


async def test_413_for_oversized_bodies(tmp_path: Path) -> None:
    app, _server = build(tmp_path, fake_registry(), {"flights": {}}, max_body_bytes=2000)
    async with running(app) as client:
        await wait_ready(client)
        big = {"rows": [row(i) for i in range(100)]}
        r = await client.post("/v1/models/flights/predict", json=big, headers=OP)
        assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "request.too_large"

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 500

        r = await client.post("/v1/models/flights/predict", content=chunks(), headers=OP)
        assert r.status_code == 413
        assert (await client.post("/v1/models/flights/predict", json={"row": row()}, headers=OP)).status_code == 200
        metrics = (await client.get("/metrics")).text
        assert 'steward_http_rejected_total{reason="request.too_large"} 2.0' in metrics


async def test_429_for_more_rows_than_max_rows(tmp_path: Path) -> None:
    app, server = build(tmp_path, fake_registry(), {"flights": {}}, max_rows=5)
    async with running(app) as client:
        await wait_ready(client)
        r = await client.post("/v1/models/flights/predict", json={"rows": [row(i) for i in range(6)]}, headers=OP)
        assert r.status_code == 429 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "serving.too_many_rows"
        assert "6 rows > serving.max_rows = 5" in r.json()["detail"]
        assert server.models["flights"].champion.batcher.stats.rows == 0  # refused before the model saw a row
        r = await client.post("/v1/models/flights/predict", json={"rows": [row(i) for i in range(5)]}, headers=OP)
        assert r.status_code == 200 and len(r.json()["predictions"]) == 5


async def test_alias_change_picked_up_without_restart_or_dropped_requests(tmp_path: Path) -> None:
    reg = fake_registry()
    app, _ = build(tmp_path, reg, {"flights": {}})
    async with running(app) as client:
        await wait_ready(client)
        seen: list[str] = []
        statuses: list[int] = []
        stop = asyncio.Event()

        async def caller(i: int) -> None:
            while not stop.is_set():
                r = await client.post("/v1/models/flights/predict", json={"row": row(i)}, headers=OP)
                statuses.append(r.status_code)
                if r.status_code == 200:
                    seen.append(r.json()["version"])
                # an in-process request on the inline path never suspends: without a real yield the
                # callers starve the test's own timers (and so the reload) for as long as the CPU allows
                await asyncio.sleep(0.001)

        tasks = [asyncio.create_task(caller(i)) for i in range(6)]
        await asyncio.sleep(0.2)
        reg.aliases[("flights", "champion")] = "2"
        r = await client.post("/v1/admin/models/flights/reload", headers=ADMIN)
        assert r.status_code == 200 and r.json()["changes"]["champion"] == {"from": "1", "to": "2"}
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*tasks)
        assert statuses and set(statuses) == {200}
        assert "1" in seen and "2" in seen
        last = seen[-20:]
        assert set(last) == {"2"}


async def test_metrics_and_request_ids(tmp_path: Path) -> None:
    sink = Written()
    app, server = build(tmp_path, fake_registry(), {"flights": {}}, sink=sink)
    async with running(app) as client:
        await wait_ready(client)
        r = await client.post("/v1/models/flights/predict", json={"rows": [row(1), row(2)]}, headers={**OP, "X-Request-ID": "req-123"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "req-123" and r.json()["request_id"] == "req-123"
        assert len(r.json()["predictions"]) == 2
        text = (await client.get("/metrics")).text
        assert 'steward_model_requests_total{model="flights",status="ok",variant="champion",version="1"} 1.0' in text
        assert "steward_model_request_duration_seconds_bucket" in text
        assert 'steward_batch_size_count{model="flights",variant="champion"}' in text
        assert 'steward_http_requests_total{method="POST",route="/v1/models/{name}/predict",status="200"} 1.0' in text
        assert "steward_prediction_log_queue_depth" in text
        assert server.prediction_logger is not None
        await asyncio.to_thread(server.prediction_logger.flush)
        logged = sink.rows
        assert [x["request_id"] for x in logged] == ["req-123:0", "req-123:1"]
        assert logged[0]["model"] == "flights" and logged[0]["version"] == "1" and logged[0]["variant"] == "champion"
        assert '"carrier"' in logged[0]["features"] and logged[0]["latency_ms"] > 0


async def test_openapi_is_complete(tmp_path: Path) -> None:
    app, _ = build(tmp_path, fake_registry(), {"flights": {}})
    async with running(app) as client:
        spec = (await client.get("/openapi.json")).json()
    predict = spec["paths"]["/v1/models/{name}/predict"]["post"]
    assert "row" in predict["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"200", "401", "403", "413", "422"} <= set(predict["responses"])
    assert "PredictResponse" in spec["components"]["schemas"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])
    for path in (
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/models",
        "/v1/serving/models",
        "/v1/serving/models/{name}",
        "/v1/admin/rollouts/{name}/start",
        "/v1/models/{name}/explain",
    ):
        assert path in spec["paths"]


async def test_explain_attributions_add_up(tmp_path: Path) -> None:
    app, _server = build(tmp_path, fake_registry(), {"flights": {}})
    async with running(app) as client:
        await wait_ready(client)
        r = await client.post("/v1/models/flights/explain", json={"row": row(2)}, headers=OP)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body["attributions"]) == {"dep_hour", "distance", "wind_speed", "carrier"}
        import math

        raw = body["base_value"] + sum(body["attributions"].values())
        assert 1 / (1 + math.exp(-raw)) == pytest.approx(body["prediction"], rel=1e-6)
        r = await client.post("/v1/models/flights/explain", json={"row": {"dep_hour": "x"}}, headers=OP)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "row.dep_hour"


async def test_registry_down_keeps_serving(tmp_path: Path) -> None:
    reg = fake_registry()
    app, server = build(tmp_path, reg, {"flights": {}})
    async with running(app) as client:
        await wait_ready(client)
        reg.down = True
        report = await server.refresh()
        assert "unreachable" in report["flights"]["error"]
        r = await client.post("/v1/models/flights/predict", json={"row": row()}, headers=OP)
        assert r.status_code == 200 and r.json()["version"] == "1"
        assert (await client.get("/readyz")).status_code == 200
        assert "steward_registry_poll_errors_total 1.0" in (await client.get("/metrics")).text
        desc = (await client.get("/v1/serving/models/flights", headers=VIEW)).json()
        assert "unreachable" in desc["last_error"]


async def test_entity_key_rows_get_online_features(tmp_path: Path) -> None:
    reg = fake_registry()
    spec = serving_spec(models={"flights": {"entity_keys": ["tailnum"]}}, poll_interval_s=0)
    calls: list[list[dict[str, Any]]] = []

    def online(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.append(rows)
        return [{"tailnum": r["tailnum"], **row(5)} for r in rows]

    server = ModelServer(None, spec, loader=reg.load, resolver=reg.resolve, online_features=online)
    app = create_app(None, model_server=server, api_keys=KEYS, serving_spec=spec)
    async with running(app) as client:
        await wait_ready(client)
        r = await client.post("/v1/models/flights/predict", json={"row": {"tailnum": "N123"}}, headers=OP)
        assert r.status_code == 200, r.text
        full = await client.post("/v1/models/flights/predict", json={"row": {**row(5), "tailnum": "N123"}}, headers=OP)
        assert r.json()["prediction"] == pytest.approx(full.json()["prediction"])
        assert calls == [[{"tailnum": "N123"}]]  # the full row needed no lookup
