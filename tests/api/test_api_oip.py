"""Open Inference Protocol v2 in-process (httpx ASGI): metadata, infer equal to native predict, binary tensors, errors, versions."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from serving_helpers import FakeRegistry, FakeRuntime, native_runtime, row
from test_api_serving import ADMIN, OP, VIEW, Written, build, fake_registry, running, wait_ready

from steward.api._oip_tensors import encode_outputs, output_metadata

pytestmark = pytest.mark.anyio


def tensors(rows: list[dict[str, Any]], *, nested: bool = False) -> list[dict[str, Any]]:
    """One tensor per feature of the flights rows (dep_hour INT64, floats FP64, carrier BYTES)."""
    types = {"dep_hour": "INT64", "distance": "FP64", "wind_speed": "FP32", "carrier": "BYTES"}
    out = []
    for name, dt in types.items():
        data: list[Any] = [r[name] for r in rows]
        shape = [len(rows), 1] if nested else [len(rows)]
        out.append({"name": name, "datatype": dt, "shape": shape, "data": [[v] for v in data] if nested else data})
    return out


def infer_body(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"inputs": tensors(rows), **extra}


async def test_metadata_health_and_infer_equal_native_predict(tmp_path: Path) -> None:
    sink = Written()
    app, server = build(tmp_path, fake_registry(), {"flights": {}}, sink=sink)
    async with running(app) as client:
        assert (await client.get("/v2/health/live")).json() == {"live": True}
        await wait_ready(client)
        assert (await client.get("/v2/health/ready")).json() == {"ready": True}
        meta = (await client.get("/v2")).json()
        assert meta["name"] == "steward" and "binary_tensor_data" in meta["extensions"]
        assert (await client.get("/v2/models/flights/ready")).json() == {"name": "flights", "ready": True}
        md = (await client.get("/v2/models/flights", headers=VIEW)).json()
        assert md["name"] == "flights" and md["versions"] == ["1"] and md["platform"] == "steward_lightgbm"
        assert [(t["name"], t["datatype"], t["shape"]) for t in md["inputs"]] == [
            ("dep_hour", "FP64", [-1]),
            ("distance", "FP64", [-1]),
            ("wind_speed", "FP64", [-1]),
            ("carrier", "BYTES", [-1]),
        ]
        assert [(t["name"], t["datatype"]) for t in md["outputs"]] == [("probability", "FP64"), ("label", "INT64")]

        rows = [row(i) for i in range(5)]
        native = (await client.post("/v1/models/flights/predict", json={"rows": rows}, headers=OP)).json()
        for nested in (False, True):
            r = await client.post(
                "/v2/models/flights/infer",
                json={"id": "req-7", "inputs": tensors(rows, nested=nested)},
                headers={**OP, "X-Request-ID": f"oip-{nested}"},
            )
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["id"] == "req-7" and out["model_name"] == "flights" and out["model_version"] == "1"
            assert out["parameters"]["variant"] == "champion" and out["parameters"]["request_id"] == f"oip-{nested}"
            by_name = {o["name"]: o for o in out["outputs"]}
            assert by_name["probability"]["shape"] == [5] and by_name["probability"]["datatype"] == "FP64"
            assert by_name["probability"]["data"] == pytest.approx(native["predictions"], abs=1e-12)
            assert by_name["label"]["data"] == [int(p >= 0.5) for p in native["predictions"]]
        # the outputs filter, and the binary extension on the way out
        r = await client.post("/v2/models/flights/infer", json=infer_body(rows, outputs=[{"name": "label"}]), headers=OP)
        assert [o["name"] for o in r.json()["outputs"]] == ["label"]
        r = await client.post(
            "/v2/models/flights/infer",
            json=infer_body(rows, outputs=[{"name": "probability", "parameters": {"binary_data": True}}]),
            headers=OP,
        )
        head_len = int(r.headers["inference-header-content-length"])
        head = r.content[:head_len]

        header = orjson.loads(head)
        assert header["outputs"][0]["parameters"]["binary_data_size"] == 5 * 8 and "data" not in header["outputs"][0]
        assert np.frombuffer(r.content[head_len:], dtype="<f8").tolist() == pytest.approx(native["predictions"], abs=1e-12)
        # the same prediction log and metrics as the native route
        assert server.prediction_logger is not None
        await asyncio.to_thread(server.prediction_logger.flush)
        logged = [x["request_id"] for x in sink.rows]
        assert "oip-False:0" in logged and "oip-True:4" in logged
        text = (await client.get("/metrics")).text
        assert 'steward_model_requests_total{model="flights",status="ok",variant="champion",version="1"} 5.0' in text
        assert 'steward_http_requests_total{method="POST",route="/v2/models/{name}/infer",status="200"} 4.0' in text


async def test_binary_tensor_extension_inputs(tmp_path: Path) -> None:
    app, _server = build(tmp_path, fake_registry(), {"flights": {}})
    async with running(app) as client:
        await wait_ready(client)
        rows = [row(i) for i in range(3)]
        native = (await client.post("/v1/models/flights/predict", json={"rows": rows}, headers=OP)).json()["predictions"]
        parts = [
            ("dep_hour", "INT32", np.array([r["dep_hour"] for r in rows], dtype="<i4").tobytes()),
            ("distance", "FP64", np.array([r["distance"] for r in rows], dtype="<f8").tobytes()),
            ("wind_speed", "FP16", np.array([r["wind_speed"] for r in rows], dtype="<f2").tobytes()),
            ("carrier", "BYTES", b"".join(struct.pack("<I", len(r["carrier"])) + r["carrier"].encode() for r in rows)),
        ]

        head = orjson.dumps(
            {"inputs": [{"name": n, "datatype": dt, "shape": [3], "parameters": {"binary_data_size": len(raw)}} for n, dt, raw in parts]}
        )
        r = await client.post(
            "/v2/models/flights/infer",
            content=head + b"".join(raw for _, _, raw in parts),
            headers={**OP, "Inference-Header-Content-Length": str(len(head)), "content-type": "application/octet-stream"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == pytest.approx(native, abs=1e-12)  # 7.5 is exact in FP16
        # a NaN in a float tensor is a missing value, as a JSON null is natively
        body = infer_body(rows[:1])
        nan_head = orjson.dumps(
            {
                "inputs": [t for t in body["inputs"] if t["name"] != "distance"]
                + [{"name": "distance", "datatype": "FP64", "shape": [1], "parameters": {"binary_data_size": 8}}]
            }
        )
        r = await client.post(
            "/v2/models/flights/infer",
            content=nan_head + np.array([np.nan]).tobytes(),
            headers={**OP, "Inference-Header-Content-Length": str(len(nan_head))},
        )
        missing = {**rows[0], "distance": None}
        want = (await client.post("/v1/models/flights/predict", json={"row": missing}, headers=OP)).json()["prediction"]
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [pytest.approx(want, abs=1e-12)]
        # inf is no missing value: the native check refuses it, named as a tensor element
        r = await client.post(
            "/v2/models/flights/infer",
            content=nan_head + np.array([np.inf]).tobytes(),
            headers={**OP, "Inference-Header-Content-Length": str(len(nan_head))},
        )
        assert r.status_code == 400 and "inputs.distance[0]: must be finite" in r.json()["error"]


async def error(client: Any, path: str, body: Any, status: int, *needles: str, headers: dict[str, str] = OP) -> dict[str, Any]:
    r = (
        await client.post(path, json=body, headers=headers)
        if not isinstance(body, bytes)
        else await client.post(path, content=body, headers=headers)
    )
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    out: dict[str, Any] = r.json()
    assert isinstance(out["error"], str)
    for needle in needles:
        assert needle in out["error"], out
    return out


async def test_errors_name_the_tensor_in_the_protocol_body(tmp_path: Path) -> None:
    app, server = build(tmp_path, fake_registry(), {"flights": {}})
    async with running(app) as client:
        await wait_ready(client)
        rows = [row(0), row(1)]
        infer = "/v2/models/flights/infer"
        await error(client, "/v2/models/ghost/infer", infer_body(rows), 404, "ghost", "not served")
        assert (await client.get("/v2/models/ghost", headers=VIEW)).status_code == 404
        assert (await client.get("/v2/models/ghost/ready")).json()["error"].startswith("model 'ghost'")

        missing = infer_body(rows)
        missing["inputs"] = [t for t in missing["inputs"] if t["name"] != "wind_speed"]
        await error(client, infer, missing, 400, "inputs.wind_speed", "missing")

        wrong = infer_body(rows)
        wrong["inputs"][3] = {"name": "carrier", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}
        await error(client, infer, wrong, 400, "inputs.carrier", "datatype FP32", "(BYTES)")
        lying = infer_body(rows)
        lying["inputs"][0]["data"] = ["eight", "nine"]  # INT64 declared, strings sent
        await error(client, infer, lying, 400, "inputs.dep_hour", "not a INT64 value")
        bogus = infer_body(rows)
        bogus["inputs"][0]["datatype"] = "INT128"
        await error(client, infer, bogus, 400, "inputs.dep_hour", "unknown datatype")

        count = infer_body(rows)
        count["inputs"][1]["shape"] = [3]
        await error(client, infer, count, 400, "inputs.distance", "shape [3] holds 3 elements but 2 were sent")
        wide = infer_body(rows)
        wide["inputs"][1].update(shape=[1, 2], data=[[500.0, 501.0]])
        await error(client, infer, wide, 400, "inputs.distance", "must be [N] or [N, 1]")
        ragged = infer_body(rows)
        ragged["inputs"][2].update(shape=[1], data=[7.5])
        await error(client, infer, ragged, 400, "different numbers of rows")
        extra = infer_body(rows)
        extra["inputs"].append({"name": "surprise", "datatype": "FP64", "shape": [2], "data": [1.0, 2.0]})
        await error(client, infer, extra, 400, "inputs.surprise", "not an input")
        await error(client, infer, infer_body(rows, outputs=[{"name": "score"}]), 400, "outputs.score", "probability, label")
        await error(client, infer, {"inputs": []}, 400, "inputs")
        await error(client, infer, b"{nope", 400, "not valid JSON")

        # auth is the native predict's: operator to infer, viewer for metadata; errors still in the protocol body
        await error(client, infer, infer_body(rows), 401, "API key", headers={})
        await error(client, infer, infer_body(rows), 403, headers=VIEW)
        assert (await client.get("/v2/models/flights")).status_code == 401
        # nothing reached the model for any of these
        assert server.models["flights"].champion is not None
        assert server.models["flights"].champion.batcher.stats.rows == 0


async def test_versions_target_a_loaded_version_else_404(tmp_path: Path) -> None:
    reg = FakeRegistry()
    reg.add("m", "1", lambda: FakeRuntime("m", "1", offset=0.1), "champion")
    reg.add("m", "2", lambda: FakeRuntime("m", "2", offset=0.9), "challenger")
    reg.add("m", "3", lambda: native_runtime(0, "m", "3"))
    app, _server = build(tmp_path, reg, {"m": {"rollout": {"mode": "canary", "steps": [10, 100], "auto": False}}})
    async with running(app) as client:
        await wait_ready(client)
        body = infer_body([row(0)])
        assert (await client.get("/v2/models/m/versions/2/ready")).status_code == 404  # no rollout yet: not loaded
        await error(client, "/v2/models/m/versions/2/infer", body, 404, "version 2", "loaded: 1")
        assert (await client.post("/v1/admin/rollouts/m/start", headers=ADMIN)).status_code == 200
        assert (await client.get("/v2/models/m/versions/2/ready")).json() == {"name": "m", "ready": True}
        assert (await client.get("/v2/models/m", headers=VIEW)).json()["versions"] == ["1", "2"]
        assert (await client.get("/v2/models/m/versions/2", headers=VIEW)).json()["versions"] == ["2"]
        for version, offset, variant in (("1", 0.1, "champion"), ("2", 0.9, "challenger")):
            for _ in range(5):  # every time, whatever the 10 % canary draws
                out = (await client.post(f"/v2/models/m/versions/{version}/infer", json=body, headers=OP)).json()
                assert out["model_version"] == version and out["parameters"]["variant"] == variant
                assert out["outputs"][0]["data"] == [pytest.approx(offset + 0.001 * row(0)["dep_hour"])]
        await error(client, "/v2/models/m/versions/3/infer", body, 404, "version 3 of model m is not loaded", "loaded: 1, 2")
        # routed (unversioned) requests follow the rollout, sticky key from the parameters
        seen = {
            (await client.post("/v2/models/m/infer", json={**body, "parameters": {"key": f"u{i}"}}, headers=OP)).json()["model_version"]
            for i in range(60)
        }
        assert seen == {"1", "2"}


async def test_not_loaded_is_503_and_openapi_documents_the_routes(tmp_path: Path) -> None:
    reg = fake_registry()
    reg.down = True
    app, _server = build(tmp_path, reg, {"flights": {}})
    async with running(app) as client:
        assert (await client.get("/v2/health/ready")).status_code == 503
        assert (await client.get("/v2/models/flights/ready")).status_code == 503
        await error(client, "/v2/models/flights/infer", infer_body([row(0)]), 503, "not loaded yet")
        spec = (await client.get("/openapi.json")).json()
    infer = spec["paths"]["/v2/models/{name}/infer"]["post"]
    assert "inputs" in infer["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"200", "400", "401", "403", "404", "503"} <= set(infer["responses"])
    assert infer["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/OIPError")
    assert infer["security"]
    for path in ("/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/versions/{version}/infer"):
        assert path in spec["paths"]
    assert {"InferenceResponse", "ModelMetadata", "ServerMetadata"} <= set(spec["components"]["schemas"])


async def test_ab_sticky_field_tensor_routes_like_the_native_field(tmp_path: Path) -> None:
    reg = FakeRegistry()
    reg.add("m", "1", lambda: FakeRuntime("m", "1", offset=0.1), "champion")
    reg.add("m", "2", lambda: FakeRuntime("m", "2", offset=0.9), "challenger")
    app, _server = build(tmp_path, reg, {"m": {"rollout": {"mode": "ab", "weight": 50, "sticky_key": "user", "auto": False}}})
    async with running(app) as client:
        await wait_ready(client)
        assert (await client.post("/v1/admin/rollouts/m/start", headers=ADMIN)).status_code == 200
        variants = set()
        for i in range(20):
            user = f"user{i}"
            native = (await client.post("/v1/models/m/predict", json={"row": {**row(i), "user": user}}, headers=OP)).json()
            body = infer_body([row(i)])
            body["inputs"].append({"name": "user", "datatype": "BYTES", "shape": [1], "data": [user]})
            out = (await client.post("/v2/models/m/infer", json=body, headers=OP)).json()
            assert (out["parameters"]["variant"], out["model_version"]) == (native["variant"], native["version"])
            variants.add(out["parameters"]["variant"])
        assert variants == {"A", "B"}


def test_output_naming_fits_every_task() -> None:

    binary = encode_outputs("binary", [0.2, 0.7])
    assert binary["probability"]["data"] == [0.2, 0.7] and binary["label"]["data"] == [0, 1]
    multi = encode_outputs("multiclass", [[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    assert multi["probabilities"]["shape"] == [2, 3] and multi["probabilities"]["data"][:3] == [0.1, 0.7, 0.2]
    assert multi["label"]["data"] == [1, 0]
    assert encode_outputs("regression", [3.5])["value"] == {"name": "value", "datatype": "FP64", "shape": [1], "data": [3.5]}
    assert [o["name"] for o in output_metadata("multiclass", 3)] == ["probabilities", "label"]
    assert output_metadata("multiclass", 3)[0]["shape"] == [-1, 3]


async def test_wrong_keys_lock_the_client_out_with_retry_after(tmp_path: Path) -> None:
    app, _server = build(tmp_path, fake_registry(), {"flights": {}})
    async with running(app) as client:
        await wait_ready(client)
        codes = [
            (
                await client.post("/v2/models/flights/infer", json=infer_body([row(0)]), headers={"Authorization": f"Bearer guess{i}"})
            ).status_code
            for i in range(10)
        ]
        assert set(codes) == {401}
        r = await client.post("/v2/models/flights/infer", json=infer_body([row(0)]), headers=OP)  # even a good key, for a while
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert r.json()["code"] == "auth.too_many_attempts" and "wait" in r.json()["error"]
