"""The gateway's Anthropic Messages API (``POST /v1/messages``), asserted through the official anthropic client."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import pytest

try:  # anthropic 2.x runs on httpx2 and refuses httpx objects; older releases used httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

from steward.api.app import create_app
from steward.llm.gateway import Gateway

DOC = "Budgets are enforced per key. The gateway refuses a request once the budget is spent."
QUESTION = f"{DOC} How are budgets enforced?"


def _client(gw: Gateway, token: str) -> tuple[anthropic.AsyncAnthropic, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gw.ws, llm_gateway=gw)), base_url="http://gw")
    return anthropic.AsyncAnthropic(api_key=token, base_url="http://gw", http_client=http, max_retries=0), http


def test_plain_and_system_messages_answer_with_text_usage_and_stop_reason(gateway_project: Any) -> None:
    ws = gateway_project({"aliases": {"chat": ["local:x"]}, "cache": {"exact": False}})

    async def go() -> None:
        gw = Gateway(ws)
        client, http = _client(gw, gateway_project.token_a)
        msg = await client.messages.create(model="chat", max_tokens=200, messages=[{"role": "user", "content": QUESTION}])
        assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
        assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
        assert len(msg.content) == 1 and msg.content[0].type == "text"
        assert "budget" in msg.content[0].text.lower()
        assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0

        # a system prompt (text blocks) and text-block user content reach the gateway as a chat request:
        # the local provider answers from the messages' own sentences, so the system text can be the answer
        system = "The vault code is seven four two."
        sys_msg = await client.messages.create(
            model="chat",
            max_tokens=200,
            system=[{"type": "text", "text": system}],
            messages=[{"role": "user", "content": [{"type": "text", "text": "What is the vault code?"}]}],
        )
        assert sys_msg.content[0].type == "text" and "seven four two" in sys_msg.content[0].text

        # the same usage ledger as /v1/chat/completions: the key's rows grow by the two requests
        r = await http.post(
            "/v1/messages",
            json={"model": "chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {gateway_project.token_a}", "anthropic-version": "2023-06-01"},
        )
        assert r.status_code == 200 and r.headers["x-steward-provider"] == "local:x"
        await gw.aclose()

    asyncio.run(go())


def test_streamed_message_yields_text_deltas_and_a_final_message(gateway_project: Any) -> None:
    ws = gateway_project({"aliases": {"chat": ["local:x"]}, "cache": {"exact": False}})

    async def go() -> None:
        gw = Gateway(ws)
        client, _ = _client(gw, gateway_project.token_a)
        plain = await client.messages.create(model="chat", max_tokens=200, messages=[{"role": "user", "content": QUESTION}])
        pieces: list[str] = []
        async with client.messages.stream(model="chat", max_tokens=200, messages=[{"role": "user", "content": QUESTION}]) as stream:
            async for text in stream.text_stream:
                pieces.append(text)
            final = await stream.get_final_message()
        assert len(pieces) > 1  # really streamed, not one block
        assert plain.content[0].type == "text" and final.content[0].type == "text"
        assert "".join(pieces) == final.content[0].text == plain.content[0].text
        assert final.stop_reason == "end_turn"
        assert final.usage.output_tokens == plain.usage.output_tokens and final.usage.input_tokens == plain.usage.input_tokens
        await gw.aclose()

    asyncio.run(go())


def test_errors_are_anthropic_shaped(gateway_project: Any) -> None:
    ws = gateway_project(
        {
            "keys": {"team-a": {"key_env": "STEWARD_KEY_TEAM_A", "budget": {"tokens": 400, "period": "day"}}},
            "aliases": {"chat": ["local:x"]},
            "cache": {"exact": False},
        }
    )

    async def go() -> None:
        gw = Gateway(ws)
        client, http = _client(gw, gateway_project.token_a)
        bad, _ = _client(gw, "nope")
        with pytest.raises(anthropic.AuthenticationError) as auth:
            await bad.messages.create(model="chat", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert auth.value.status_code == 401 and "invalid gateway key" in auth.value.message
        assert auth.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]

        with pytest.raises(anthropic.RateLimitError) as quota:
            await client.messages.create(model="chat", max_tokens=1000, messages=[{"role": "user", "content": QUESTION}])
        assert quota.value.status_code == 429 and "400 tokens per day" in quota.value.message
        assert quota.value.body["error"]["steward_code"] == "limit.budget"  # type: ignore[index]

        with pytest.raises(anthropic.NotFoundError) as nf:
            await client.messages.create(model="ghost", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]

        with pytest.raises(anthropic.BadRequestError) as img:
            await client.messages.create(
                model="chat",
                max_tokens=5,
                messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}]}],
            )
        assert img.value.body["error"]["param"] == "messages[0].content[0].type"  # type: ignore[index]

        r = await http.post("/v1/messages", json={"model": "chat", "messages": []}, headers={"x-api-key": gateway_project.token_a})
        assert r.status_code == 400
        assert r.json() == {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": r.json()["error"]["message"],
                "steward_code": "validation.failed",
                "param": "max_tokens",
            },
        }
        r = await http.post("/v1/messages", json={"model": "chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        await gw.aclose()

    asyncio.run(go())
