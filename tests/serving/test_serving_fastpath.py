"""The lean predict path: the pure-ASGI fast path, inline micro-batching, one-row LightGBM calls, quick validation."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import httpx
import numpy as np
import pytest
from serving_helpers import ENCODING, FakeRegistry, FakeRuntime, native_runtime, row, serving_spec

from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.api.routes_models import PredictFastPath
from steward.serving.batching import MicroBatcher
from steward.serving.runtime import InputSchema, field_errors
from steward.serving.server import ModelServer

pytestmark = pytest.mark.anyio

KEYS = ApiKeys({"op-key": ("op1", "operator"), "view-key": ("v1", "viewer")})
OP = {"Authorization": "Bearer op-key"}


def _app(*, fast: bool) -> tuple[Any, ModelServer]:
    reg = FakeRegistry()
    reg.add("flights", "1", lambda: FakeRuntime("flights", "1"), "champion")
    spec = serving_spec(models={"flights": {}}, poll_interval_s=0, batching={"max_wait_ms": 1.0})
    server = ModelServer(None, spec, loader=reg.load, resolver=reg.resolve)
    app = create_app(None, model_server=server, api_keys=KEYS, serving_spec=spec)
    if not fast:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not PredictFastPath]
    return app, server


async def _exchange(fast: bool) -> list[tuple[int, str, dict[str, Any]]]:
    app, _ = _app(fast=fast)
    bodies: list[Any] = [
        {"row": row(1)},
        {"rows": [row(1), row(2)]},
        {"row": {**row(1), "distance": "far", "bogus": 1}},
        {"row": row(1), "extra": True},
        {"rows": []},
        [1, 2],
        b"{nope",
    ]
    out = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        for _ in range(200):
            if (await client.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.02)
        for i, b in enumerate(bodies):
            kw: dict[str, Any] = {"content": b} if isinstance(b, bytes) else {"json": b}
            r = await client.post("/v1/models/flights/predict", headers={**OP, "X-Request-ID": f"r{i}"}, **kw)
            body = r.json()
            body.pop("latency_ms", None)
            out.append((r.status_code, r.headers["content-type"], body))
        r = await client.post("/v1/models/flights/predict", json={"row": row(1)})
        out.append((r.status_code, r.headers["content-type"], r.json()))
        r = await client.post("/v1/models/flights/predict", json={"row": row(1)}, headers={"X-API-Key": "view-key"})
        out.append((r.status_code, r.headers["content-type"], r.json()))
        r = await client.post("/v1/models/nope/predict", json={"row": row(1)}, headers=OP)
        out.append((r.status_code, r.headers["content-type"], r.json()))
        metrics = (await client.get("/metrics")).text
    assert 'steward_http_requests_total{method="POST",route="/v1/models/{name}/predict",status="200"} 2.0' in metrics
    assert 'steward_model_requests_total{model="flights",status="ok",variant="champion",version="1"} 2.0' in metrics
    return out


async def test_fast_path_answers_exactly_like_the_fastapi_route() -> None:
    fast, slow = await _exchange(True), await _exchange(False)
    assert fast == slow
    statuses = [s for s, _, _ in fast]
    assert statuses == [200, 200, 422, 422, 422, 422, 422, 401, 403, 404]
    assert fast[0][2]["request_id"] == "r0" and fast[0][2]["prediction"] == fast[0][2]["predictions"][0]
    assert [e["field"] for e in fast[2][2]["errors"]] == ["row.distance", "row.bogus"]
    assert all(ct.startswith("application/problem+json") for _, ct, _ in fast[2:])


async def test_fast_model_runs_inline_and_slow_model_in_the_worker_thread() -> None:
    seen: list[str] = []

    def fast(x: np.ndarray) -> np.ndarray:
        seen.append(threading.current_thread().name)
        return np.asarray(x[:, 0], dtype=np.float64)

    b = MicroBatcher(fast, max_batch_size=8, max_wait_ms=5, inline_below_ms=5.0)
    outs = [await b.submit(np.full((1, 2), float(i))) for i in range(20)]
    assert [float(o[0]) for o in outs] == [float(i) for i in range(20)]
    assert seen[0].startswith("steward-")  # the first call is measured in the thread
    assert b.inline_calls == 19 and set(seen[1:]) == {threading.current_thread().name}
    big = await b.submit(np.ones((8, 2)))  # a full batch never runs inline
    assert len(big) == 8 and seen[-1].startswith("steward-")
    await b.aclose()

    def slow(x: np.ndarray) -> np.ndarray:
        import time

        time.sleep(0.004)
        return np.asarray(x[:, 0], dtype=np.float64)

    b = MicroBatcher(slow, max_batch_size=8, max_wait_ms=5, inline_below_ms=1.0)
    outs = await asyncio.gather(*(b.submit(np.full((1, 2), float(i))) for i in range(16)))
    assert [float(o[0]) for o in outs] == [float(i) for i in range(16)]
    assert b.inline_calls == 0 and b.stats.batches < 16  # batched in the thread, as before
    await b.aclose()

    off = MicroBatcher(fast, max_batch_size=8, inline_below_ms=0.0)
    for _ in range(5):
        await off.submit(np.ones((1, 2)))
    assert off.inline_calls == 0
    await off.aclose()


def test_one_row_lightgbm_call_gives_the_boosters_scores() -> None:
    rt = native_runtime(seed=3)
    rng = np.random.default_rng(1)
    n = len(rt.feature_names)
    x = rng.normal(size=(50, n)) * 10
    x[rng.random(x.shape) < 0.2] = np.nan
    one = np.array([rt.predict(x[i : i + 1])[0] for i in range(len(x))])
    assert rt.__dict__.get("_single")  # the fast single-row predictor is in use
    np.testing.assert_array_equal(one, rt.model.predict(x, num_threads=1))
    np.testing.assert_array_equal(rt.predict(x), rt.model.predict(x, num_threads=1))  # batches take the ordinary path


def test_quick_validation_agrees_with_the_full_check() -> None:
    schema = InputSchema.from_encoding(ENCODING)
    good = row(1)
    assert field_errors(schema, [good, good]) == []
    cases = [
        {**good, "distance": math.inf},
        {**good, "distance": math.nan},
        {**good, "distance": True},
        {**good, "carrier": 3},
        {**good, "zzz": 1},
        {k: v for k, v in good.items() if k != "distance"},
        {**good, "distance": None},
        "not a row",
    ]
    for bad in cases:
        errs = field_errors(schema, [good, bad])
        optional_missing = isinstance(bad, dict) and (bad.get("distance", 0) is None or "distance" not in bad)
        assert (errs == []) == optional_missing, bad
        assert all(e["field"].startswith("rows.1") for e in errs)
