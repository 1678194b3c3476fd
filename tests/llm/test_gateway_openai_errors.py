"""Gateway errors in OpenAI's shape, asserted through the official openai client (typed errors, .code, .param, .message)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest

from steward.api.app import create_app
from steward.llm.gateway import Gateway


def _client(gw: Gateway, token: str) -> tuple[openai.AsyncOpenAI, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gw.ws, llm_gateway=gw)), base_url="http://gw")
    return openai.AsyncOpenAI(api_key=token, base_url="http://gw/v1", http_client=http, max_retries=0), http


MSG = [{"role": "user", "content": "Budgets are enforced. How are budgets enforced?"}]


def test_budget_rate_validation_auth_and_model_errors_are_openai_shaped(gateway_project: Any) -> None:
    ws = gateway_project(
        {
            "keys": {
                "team-a": {"key_env": "STEWARD_KEY_TEAM_A", "budget": {"tokens": 400, "period": "day"}},
                "team-b": {"key_env": "STEWARD_KEY_TEAM_B", "rate_limit": {"requests_per_minute": 1}},
            },
            "aliases": {"chat": ["local:x"]},
            "cache": {"exact": False},
        }
    )

    async def go() -> None:
        gw = Gateway(ws)
        a, http = _client(gw, gateway_project.token_a)
        b, _ = _client(gw, gateway_project.token_b)
        with pytest.raises(openai.RateLimitError) as quota:
            await a.chat.completions.create(model="chat", messages=MSG, max_tokens=1000)  # type: ignore[arg-type]
        assert quota.value.status_code == 429 and quota.value.code == "insufficient_quota"
        assert quota.value.type == "insufficient_quota" and "400 tokens per day" in quota.value.message
        assert quota.value.body["steward_code"] == "limit.budget"  # type: ignore[index]

        await b.chat.completions.create(model="chat", messages=MSG, max_tokens=5)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as rate:
            await b.chat.completions.create(model="chat", messages=MSG, max_tokens=5)  # type: ignore[arg-type]
        assert rate.value.code == "rate_limit_exceeded" and int(rate.value.response.headers["retry-after"]) >= 1

        with pytest.raises(openai.BadRequestError) as bad:
            await a.chat.completions.create(model="chat", messages=[{"role": "user", "content": 3}], max_tokens=5)  # type: ignore[list-item]
        assert bad.value.param == "messages[0].content" and bad.value.type == "invalid_request_error"
        assert "messages[0].content" in bad.value.message

        r = await http.post("/v1/chat/completions", content=b"{not json", headers={"authorization": f"Bearer {gateway_project.token_a}"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "body" and r.json()["error"]["type"] == "invalid_request_error"

        bad_key = openai.AsyncOpenAI(api_key="nope", base_url="http://gw/v1", http_client=http, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as auth:
            await bad_key.models.list()
        assert auth.value.code == "invalid_api_key" and "invalid gateway key" in auth.value.message

        with pytest.raises(openai.NotFoundError) as nf:
            await a.models.retrieve("ghost")
        assert nf.value.code == "model_not_found" and nf.value.param == "model" and "ghost" in nf.value.message
        with pytest.raises(openai.NotFoundError) as nf2:
            await a.chat.completions.create(model="ghost", messages=MSG)  # type: ignore[arg-type]
        assert nf2.value.code == "model_not_found"
        await gw.aclose()

    asyncio.run(go())


def test_every_provider_rate_limited_is_429_with_the_upstream_retry_after(gateway_project: Any, upstream: Any) -> None:
    spec = {"kind": "openai", "base_url": upstream.url, "timeout_s": 0.5, "max_retries": 0}
    ws = gateway_project(
        {
            "providers": {"up": spec},
            "aliases": {"busy": ["up:limited7", "up:limited3"], "mixed": ["up:fail", "up:limited3"]},
            "cache": {"exact": False},
            "circuit_breaker": {"failures": 100},
        }
    )

    async def go() -> None:
        gw = Gateway(ws)
        c, _ = _client(gw, gateway_project.token_a)
        for stream in (False, True):
            with pytest.raises(openai.RateLimitError) as exc:
                await c.chat.completions.create(model="busy", messages=MSG, stream=stream)  # type: ignore[call-overload]
            assert exc.value.code == "rate_limit_exceeded" and "rate-limited" in exc.value.message
            assert exc.value.response.headers["retry-after"] == "3"  # the soonest any provider accepts again
            assert exc.value.body["steward_code"] == "llm.providers_rate_limited"  # type: ignore[index]
        with pytest.raises(openai.InternalServerError) as outage:  # one provider is down, not busy: still 502
            await c.chat.completions.create(model="mixed", messages=MSG)  # type: ignore[arg-type]
        assert outage.value.status_code == 502 and outage.value.body["steward_code"] == "llm.all_providers_failed"  # type: ignore[index]
        await gw.aclose()

    asyncio.run(go())


def test_usd_budget_message_reads_dollars_and_fields_name_their_units(gateway_project: Any) -> None:
    ws = gateway_project(
        {
            "keys": {"team-a": {"key_env": "STEWARD_KEY_TEAM_A", "budget": {"usd": 0.00003, "period": "day"}}},
            "prices": {"local:x": {"input_per_1m": 1, "output_per_1m": 1}},  # one micro-dollar per token
            "cache": {"exact": False},
        }
    )

    async def go() -> None:
        gw = Gateway(ws)
        c, _ = _client(gw, gateway_project.token_a)
        with pytest.raises(openai.RateLimitError) as exc:
            await c.chat.completions.create(model="local:x", messages=MSG, max_tokens=100)  # type: ignore[arg-type]
        err: dict[str, Any] = exc.value.body  # type: ignore[assignment]
        assert exc.value.code == "insufficient_quota"
        assert "$0.000030 per day" in exc.value.message and "$0.0000 " not in exc.value.message
        assert err["limit_usd"] == pytest.approx(0.00003) and err["limit_micro_usd"] == 30
        assert isinstance(err["requested_micro_usd"], int) and err["requested_usd"] == pytest.approx(err["requested_micro_usd"] / 1e6)
        assert f"this request needs ${err['requested_usd']:.6f}" in exc.value.message
        assert err["used_micro_usd"] == 0 and "limit" not in err  # no unitless amount left
        await gw.aclose()

    asyncio.run(go())


def test_embeddings_honour_base64_and_dimensions(gateway_project: Any) -> None:
    import base64
    import math

    import numpy as np

    ws = gateway_project({"aliases": {"embed": ["local:minilm"]}})
    native = np.array([[3.0, 4.0, 12.0, 0.5, 0.25, -1.0, 2.0, 1.0]], dtype=np.float32)

    async def go() -> None:
        gw = Gateway(ws, embed=lambda texts: np.repeat(native, len(texts), axis=0))
        c, _ = _client(gw, gateway_project.token_a)
        raw = await c.embeddings.create(model="embed", input="abc", encoding_format="base64")
        encoded = raw.data[0].embedding
        assert isinstance(encoded, str)  # the client hands base64 back as sent
        assert np.frombuffer(base64.b64decode(encoded), dtype="<f4").tolist() == native[0].tolist()

        short = await c.embeddings.create(model="embed", input=["abc", "de"], dimensions=2)
        assert [d.embedding for d in short.data] == [pytest.approx([0.6, 0.8])] * 2  # truncated, re-normalised
        assert math.isclose(sum(x * x for x in short.data[0].embedding), 1.0, rel_tol=1e-6)
        both = await c.embeddings.create(model="embed", input="abc", dimensions=4, encoding_format="base64")
        four = np.frombuffer(base64.b64decode(both.data[0].embedding), dtype="<f4")  # type: ignore[arg-type]
        assert four.shape == (4,) and four == pytest.approx(native[0, :4] / np.linalg.norm(native[0, :4]))

        with pytest.raises(openai.BadRequestError) as wide:
            await c.embeddings.create(model="embed", input="abc", dimensions=9)
        assert wide.value.param == "dimensions" and "at most 8" in wide.value.message
        with pytest.raises(openai.BadRequestError) as fmt:
            await c.embeddings.create(model="embed", input="abc", encoding_format="hex")  # type: ignore[arg-type]
        assert fmt.value.param == "encoding_format"
        await gw.aclose()

    asyncio.run(go())
