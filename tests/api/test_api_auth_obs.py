"""API keys from the spec, the environment and a secrets file; JSON logs with request ids; request traces."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from serving_helpers import FakeRegistry, make_workspace, native_runtime, row, serving_spec
from test_api_serving import running, wait_ready

from steward.api.app import create_app
from steward.api.auth import load_keys
from steward.errors import SpecError
from steward.observability.logging import JsonFormatter, request_id_var
from steward.serving.server import ModelServer
from steward.spec import ServingAuthSpec


def test_keys_from_spec_env_and_secrets_file(tmp_path: Path) -> None:
    secrets = tmp_path / "keys.yaml"
    secrets.write_text("file-admin-key: admin\nfile-viewer-key: viewer\n")
    auth = ServingAuthSpec.model_validate({"keys": {"ci": {"key_env": "CI_KEY", "role": "operator"}}, "keys_file": str(secrets)})
    keys = load_keys(auth, None, {"CI_KEY": "spec-key", "STEWARD_API_KEYS": "env-key-1:viewer,env:key:2:admin"})
    assert len(keys) == 5
    assert keys.identify("spec-key") is not None and keys.identify("spec-key").role == "operator"  # type: ignore[union-attr]
    assert keys.identify("env:key:2").role == "admin"  # type: ignore[union-attr]  # the role is after the last colon
    assert keys.identify("file-admin-key").role == "admin"  # type: ignore[union-attr]
    assert keys.identify("file-admin-ke") is None and keys.identify("") is None and keys.identify(None) is None
    with pytest.raises(SpecError):
        load_keys(ServingAuthSpec(), None, {"STEWARD_API_KEYS": "k:root"})
    with pytest.raises(SpecError):
        load_keys(ServingAuthSpec(keys_file=str(tmp_path / "missing.yaml")), None, {})
    open_keys = load_keys(ServingAuthSpec(required=False), None, {})
    assert not open_keys.required


def test_json_log_lines_carry_the_request_id() -> None:
    fmt = JsonFormatter()
    record = logging.LogRecord("steward.test", logging.WARNING, __file__, 1, "model %s failed", ("m",), None)
    record.duration_ms = 1.5
    token = request_id_var.set("req-42")
    try:
        line = json.loads(fmt.format(record))
    finally:
        request_id_var.reset(token)
    assert (
        line["request_id"] == "req-42" and line["message"] == "model m failed" and line["level"] == "WARNING" and line["duration_ms"] == 1.5
    )
    assert "request_id" not in json.loads(fmt.format(record))


@pytest.mark.anyio
async def test_each_request_is_traced_with_its_request_id(tmp_path: Path) -> None:
    from steward.observability.tracing import flush, recent_traces

    reg = FakeRegistry()
    reg.add("m", "1", lambda: native_runtime(0, "m", "1"), "champion")
    ws = make_workspace(tmp_path / "p")
    spec = serving_spec(
        models={"m": {}}, poll_interval_s=0, auth={"required": False}, prediction_log={"enabled": False}, trace_sample_ratio=1.0
    )
    server = ModelServer(ws, spec, loader=reg.load, resolver=reg.resolve)
    app = create_app(ws, model_server=server, serving_spec=spec)
    async with running(app) as client:
        await wait_ready(client)
        r = await client.post("/v1/models/m/predict", json={"row": row()}, headers={"X-Request-ID": "trace-me-1"})
        assert r.status_code == 200
    await asyncio.to_thread(flush, ws)
    spans = [s for s in recent_traces(ws, 50) if s["attributes"].get("http.request_id") == "trace-me-1"]
    assert len(spans) == 1 and spans[0]["name"] == "POST /v1/models/m/predict"
    assert spans[0]["attributes"]["http.status_code"] == 200 and spans[0]["attributes"]["http.route"] == "/v1/models/{name}/predict"
