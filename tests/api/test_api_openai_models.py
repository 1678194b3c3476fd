"""GET /v1/models is the gateway's OpenAI model list (official openai client) on the full app; served models are at /v1/serving/models."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from serving_helpers import FakeRegistry, native_runtime, serving_spec

from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.serving.server import ModelServer
from steward.workspace import open_workspace

pytestmark = pytest.mark.anyio

KEYS = ApiKeys({"view-key": ("viewer1", "viewer"), "op-key": ("op1", "operator")})
VIEW = {"Authorization": "Bearer view-key"}
ALIASES = {"chat-default": ["local:extractive"], "embed": ["local:hash"]}


@asynccontextmanager
async def full_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The whole API (model server and gateway) in-process, with one served model and a gateway key."""
    token = f"sk-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("STEWARD_TEST_GW_KEY", token)
    doc = {"project": "oaimodels", "llm": {"gateway": {"keys": {"team-a": {"key_env": "STEWARD_TEST_GW_KEY"}}, "aliases": ALIASES}}}
    (tmp_path / "steward.yaml").write_text(yaml.safe_dump(doc))
    ws = open_workspace(tmp_path)
    reg = FakeRegistry()
    reg.add("flights", "1", lambda: native_runtime(0, "flights", "1"), "champion")
    spec = serving_spec(models={"flights": {}}, poll_interval_s=0, prediction_log={"enabled": False})
    server = ModelServer(ws, spec, loader=reg.load, resolver=reg.resolve)
    app = create_app(ws, model_server=server, api_keys=KEYS, serving_spec=spec)
    try:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            for _ in range(500):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.02)
            yield client, token
    finally:
        ws.close()


def openai_client(http: httpx.AsyncClient, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=token, base_url="http://api/v1", http_client=http, max_retries=0)


async def test_openai_client_lists_and_retrieves_gateway_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with full_app(tmp_path, monkeypatch) as (http, token):
        client = openai_client(http, token)
        page = await client.models.list()
        assert [m.id for m in page.data] == sorted(ALIASES)
        assert all(m.object == "model" and m.owned_by == "steward" for m in page.data)
        one = await client.models.retrieve("chat-default")
        assert one.id == "chat-default" and one.object == "model"
        with pytest.raises(openai.NotFoundError) as nf:
            await client.models.retrieve("flights")  # a served ML model is no gateway model
        assert nf.value.body["steward_code"] == "llm.unknown_model"  # type: ignore[index]
        with pytest.raises(openai.AuthenticationError):
            await openai_client(http, "sk-wrong").models.list()


async def test_api_keys_list_served_models_at_their_own_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with full_app(tmp_path, monkeypatch) as (http, token):
        listing = (await http.get("/v1/serving/models", headers=VIEW)).json()
        assert [m["name"] for m in listing["models"]] == ["flights"]
        desc = await http.get("/v1/serving/models/flights", headers=VIEW)
        assert desc.status_code == 200 and "carrier" in desc.json()["input_schema"]["properties"]
        assert (await http.get("/v1/serving/models")).status_code == 401
        assert (await http.get("/v1/serving/models", headers={"Authorization": f"Bearer {token}"})).status_code == 401
        # an API key is not a gateway key: the OpenAI list refuses it instead of answering another body
        r = await http.get("/v1/models", headers=VIEW)
        assert r.status_code == 401 and r.json()["error"]["steward_code"] == "auth.unauthenticated"
        # predict keeps its path
        row = {"dep_hour": 8, "distance": 500.0, "wind_speed": 7.5, "carrier": "AA"}
        p = await http.post("/v1/models/flights/predict", json={"row": row}, headers={"X-API-Key": "op-key"})
        assert p.status_code == 200 and 0 < p.json()["prediction"] < 1


async def test_openapi_describes_each_route_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with full_app(tmp_path, monkeypatch) as (http, _token):
        spec: dict[str, Any] = (await http.get("/openapi.json")).json()
    paths = spec["paths"]
    assert "OpenAI" in paths["/v1/models"]["get"]["summary"] and "security" not in paths["/v1/models"]["get"]
    assert "get" in paths["/v1/models/{model}"]
    assert paths["/v1/serving/models"]["get"]["security"] and paths["/v1/serving/models/{name}"]["get"]["security"]
    assert "/v1/models/{name}" not in paths  # the old describe path is gone; predict stays
    assert "post" in paths["/v1/models/{name}/predict"]
