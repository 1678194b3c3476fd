"""The Open Inference Protocol v2 with the official Triton client against a real ``steward serve`` (uvicorn subprocess)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from serving_helpers import make_workspace, register, row, train_booster

import steward

tritonhttp = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

OP_KEY, VIEW_KEY = "oip-operator-secret", "oip-viewer-secret"
# tritonclient adds Inference-Header-Content-Length to the headers dict it is given: every call gets a copy
OP = {"Authorization": f"Bearer {OP_KEY}"}
VIEW = {"Authorization": f"Bearer {VIEW_KEY}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A workspace with two registered versions of ``flights`` (v1 champion), served by ``steward serve`` on a spare port."""
    root = tmp_path_factory.mktemp("oip") / "proj"
    ws = make_workspace(root, "models:\n  flights: {}\npoll_interval_s: 0\nprediction_log: {enabled: false}\naccess_log: false")
    v1 = register(ws, "flights", train_booster(0), champion=True)
    v2 = register(ws, "flights", train_booster(1))
    ws.close()
    port = free_port()
    src = str(Path(steward.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p),
        "STEWARD_API_KEYS": f"{OP_KEY}:operator,{VIEW_KEY}:viewer",
    }
    log = (root / "serve.log").open("wb")
    cmd = [sys.executable, "-m", "steward", "--spec", str(root / "steward.yaml"), "serve", "--port", str(port), "--no-monitor"]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"steward serve exited with {proc.returncode}:\n{(root / 'serve.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError(f"steward serve never became ready:\n{(root / 'serve.log').read_text()[-3000:]}")
        yield {"base": base, "url": f"127.0.0.1:{port}", "v1": str(v1), "v2": str(v2)}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def inputs(rows: list[dict[str, Any]], metadata: dict[str, Any], *, binary: bool) -> list[Any]:
    """One InferInput per model input, typed as the model metadata says."""
    out = []
    for t in metadata["inputs"]:
        values = [r[t["name"]] for r in rows]
        arr = np.array(values, dtype=object) if t["datatype"] == "BYTES" else np.array(values, dtype=np.float64)
        tensor = tritonhttp.InferInput(t["name"], [len(rows)], t["datatype"])
        tensor.set_data_from_numpy(arr, binary_data=binary)
        out.append(tensor)
    return out


def test_triton_client_health_metadata_and_infer_equal_native(served: dict[str, Any]) -> None:
    client = tritonhttp.InferenceServerClient(url=served["url"])
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.get_server_metadata()["name"] == "steward"
        assert client.is_model_ready("flights") and client.is_model_ready("flights", served["v1"])
        assert not client.is_model_ready("flights", served["v2"])  # registered, not loaded
        assert not client.is_model_ready("ghost")
        meta = client.get_model_metadata("flights", headers={**VIEW})
        assert meta["versions"] == [served["v1"]]
        assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [
            ("dep_hour", "FP64"),
            ("distance", "FP64"),
            ("wind_speed", "FP64"),
            ("carrier", "BYTES"),
        ]
        assert [t["name"] for t in meta["outputs"]] == ["probability", "label"]

        rows = [row(i) for i in range(8)]
        native = httpx.post(f"{served['base']}/v1/models/flights/predict", json={"rows": rows}, headers={**OP}, timeout=30).json()
        expected = np.array(native["predictions"])
        for binary in (True, False):  # the client's default binary tensors, and JSON data
            result = client.infer("flights", inputs(rows, meta, binary=binary), request_id=f"r-{binary}", headers={**OP})
            np.testing.assert_allclose(result.as_numpy("probability"), expected, rtol=0, atol=1e-12)
            assert result.as_numpy("label").tolist() == [int(p >= 0.5) for p in expected]
            response = result.get_response()
            assert response["id"] == f"r-{binary}" and response["model_version"] == served["v1"]
        only = client.infer(
            "flights",
            inputs(rows, meta, binary=True),
            model_version=served["v1"],
            outputs=[tritonhttp.InferRequestedOutput("label", binary_data=False)],
            headers={**OP},
        )
        assert only.as_numpy("probability") is None and only.as_numpy("label").shape == (8,)
    finally:
        client.close()


def test_triton_client_sees_protocol_errors(served: dict[str, Any]) -> None:
    client = tritonhttp.InferenceServerClient(url=served["url"])
    try:
        meta = client.get_model_metadata("flights", headers={**VIEW})
        rows = [row(0), row(1)]
        with pytest.raises(InferenceServerException) as exc:
            client.infer("flights", inputs(rows, meta, binary=True), model_version=served["v2"], headers={**OP})
        assert exc.value.status() == "404" and f"version {served['v2']}" in exc.value.message()
        with pytest.raises(InferenceServerException) as exc:
            client.infer("flights", inputs(rows, meta, binary=True)[:3], headers={**OP})
        assert exc.value.status() == "400" and "inputs.carrier: input tensor missing" in exc.value.message()
        with pytest.raises(InferenceServerException) as exc:
            client.infer("ghost", inputs(rows, meta, binary=True), headers={**OP})
        assert exc.value.status() == "404"
        with pytest.raises(InferenceServerException) as exc:
            client.infer("flights", inputs(rows, meta, binary=True))
        assert exc.value.status() == "401"
        with pytest.raises(InferenceServerException) as exc:
            client.get_model_metadata("flights", headers={"Authorization": "Bearer nope"})
        assert exc.value.status() == "401"
    finally:
        client.close()
