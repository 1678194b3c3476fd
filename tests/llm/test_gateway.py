"""The gateway through the official openai client (in-process), and routing against a real local upstream."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import openai
import pytest

from steward.api.app import create_app
from steward.errors import AuthError
from steward.llm.gateway import Gateway, extractive_answer

CONTEXT = (
    "Steward keeps models healthy in production. "
    "The gateway falls back to the next provider when one fails. "
    "Budgets are enforced atomically in SQLite or Redis. "
    "Paris is the capital of France."
)


def client(gw: Gateway, token: str) -> openai.AsyncOpenAI:
    app = create_app(gw.ws, llm_gateway=gw)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    return openai.AsyncOpenAI(api_key=token, base_url="http://gw/v1", http_client=http, max_retries=0)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def upstream_spec(upstream: Any, **extra: Any) -> dict[str, Any]:
    return {"kind": "openai", "base_url": upstream.url, "timeout_s": 0.5, "max_retries": 1, **extra}


def test_extractive_answer_picks_the_overlapping_sentences() -> None:
    messages = [{"role": "system", "content": CONTEXT}, {"role": "user", "content": "What is the capital of France?"}]
    assert extractive_answer(messages) == "Paris is the capital of France."
    assert "could not find" in extractive_answer([{"role": "user", "content": "Why?"}])


def test_openai_client_plain_and_streaming(gateway_project: Any) -> None:
    ws = gateway_project({"aliases": {"chat-default": ["local:extractive"]}, "cache": {"exact": False}})

    async def go() -> None:
        gw = Gateway(ws)
        c = client(gw, gateway_project.token_a)
        messages = [
            {"role": "system", "content": CONTEXT},
            {"role": "user", "content": "Which provider does the gateway use when one fails?"},
        ]
        resp = await c.chat.completions.create(model="chat-default", messages=messages)
        answer = resp.choices[0].message.content
        assert answer is not None and "falls back to the next provider" in answer
        assert resp.usage is not None and resp.usage.prompt_tokens > 10 and resp.usage.completion_tokens > 0

        stream = await c.chat.completions.create(
            model="chat-default", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        parts, usage, finish = [], None, None
        async for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for ch in chunk.choices:
                parts.append(ch.delta.content or "")
                finish = ch.finish_reason or finish
        assert "".join(parts) == answer
        assert finish == "stop" and usage is not None and usage.completion_tokens == resp.usage.completion_tokens

        raw = await c.chat.completions.with_raw_response.create(model="chat-default", messages=messages)
        assert raw.headers["x-steward-provider"] == "local:extractive"
        await gw.aclose()

    run(go())


def test_openai_client_tools_local_and_upstream(gateway_project: Any, upstream: Any) -> None:
    ws = gateway_project({"providers": {"up": upstream_spec(upstream)}, "aliases": {"tooly": ["up:tools"]}, "cache": {"exact": False}})
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]

    async def go() -> None:
        gw = Gateway(ws)
        c = client(gw, gateway_project.token_a)
        msgs = [{"role": "user", "content": "Weather in Paris?"}]
        # upstream tool call passes through unchanged
        resp = await c.chat.completions.create(model="tooly", messages=msgs, tools=tools)
        call = resp.choices[0].message.tool_calls[0]
        assert resp.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
        # streamed tool call
        stream = await c.chat.completions.create(model="tooly", messages=msgs, tools=tools, stream=True)
        names = [
            tc.function.name
            async for chunk in stream
            for ch in chunk.choices
            for tc in (ch.delta.tool_calls or [])
            if tc.function and tc.function.name
        ]
        assert names == ["get_weather"]
        # the local provider calls a forced tool with schema-filled arguments, then answers from the tool result
        forced = {"type": "function", "function": {"name": "get_weather"}}
        resp = await c.chat.completions.create(model="local:extractive", messages=msgs, tools=tools, tool_choice=forced)
        call = resp.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather" and set(json.loads(call.function.arguments)) == {"city"}
        follow = [
            *msgs,
            resp.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Paris weather is sunny today."},
        ]
        resp = await c.chat.completions.create(model="local:extractive", messages=follow, tools=tools, tool_choice=forced)
        assert resp.choices[0].message.content == "Paris weather is sunny today."
        await gw.aclose()

    run(go())


def test_auth_unknown_model_and_problem_json(gateway_project: Any) -> None:
    ws = gateway_project()

    async def go() -> None:
        gw = Gateway(ws)
        bad = client(gw, "sk-wrong")
        with pytest.raises(openai.AuthenticationError) as exc:
            await bad.chat.completions.create(model="local:x", messages=[{"role": "user", "content": "hi"}])
        assert exc.value.body["steward_code"] == "auth.unauthenticated"  # type: ignore[index]
        good = client(gw, gateway_project.token_b)
        with pytest.raises(openai.NotFoundError) as nf:
            await good.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
        assert nf.value.body["steward_code"] == "llm.unknown_model"  # type: ignore[index]
        resp = await good.chat.completions.create(model="local:x", messages=[{"role": "user", "content": "hi"}])
        assert resp.choices[0].message.content
        await gw.aclose()

    run(go())


def test_fallback_on_error_timeout_and_429(gateway_project: Any, upstream: Any) -> None:
    ws = gateway_project(
        {
            "providers": {"up": upstream_spec(upstream)},
            "aliases": {
                "e": ["up:fail", "up:ok"],
                "t": ["up:slow", "local:x"],
                "r": ["up:limited", "up:ok"],
                "all": ["up:fail", "up:limited"],
            },
            "cache": {"exact": False},
            "circuit_breaker": {"failures": 100},
        }
    )

    async def go() -> None:
        gw = Gateway(ws)
        c = client(gw, gateway_project.token_a)
        msg = [{"role": "user", "content": "hello"}]
        before = upstream.calls.copy()
        raw = await c.chat.completions.with_raw_response.create(model="e", messages=msg)
        assert raw.parse().choices[0].message.content == "upstream ok says: hello"
        assert raw.headers["x-steward-provider"] == "up:ok"
        assert upstream.calls["fail"] - before["fail"] == 2  # one try + one retry (max_retries: 1), then fallback

        t0 = time.perf_counter()
        resp = await c.chat.completions.create(model="t", messages=[{"role": "system", "content": "Hello is a greeting."}, *msg])
        assert resp.choices[0].message.content == "Hello is a greeting."  # answered by the local fallback
        assert time.perf_counter() - t0 < 1.9  # two 0.5 s timeouts, not the upstream's 2 s

        before = upstream.calls.copy()
        resp = await c.chat.completions.create(model="r", messages=msg)
        assert resp.choices[0].message.content == "upstream ok says: hello"
        assert upstream.calls["limited"] - before["limited"] == 1  # a 429 falls back at once, no retry

        with pytest.raises(openai.APIStatusError) as exc:
            await c.chat.completions.create(model="all", messages=msg)
        assert exc.value.status_code == 502 and exc.value.body["steward_code"] == "llm.all_providers_failed"  # type: ignore[index]
        assert len(exc.value.body["attempts"]) == 4  # type: ignore[index]  # fail x2, then the last step (429) retried once
        await gw.aclose()

    run(go())


def test_stream_fallback_before_first_token_and_error_after(gateway_project: Any, upstream: Any) -> None:
    ws = gateway_project(
        {
            "providers": {"up": upstream_spec(upstream, max_retries=0)},
            "aliases": {"s": ["up:broken", "up:ok"], "m": ["up:midbreak", "up:ok"]},
            "cache": {"exact": False},
        }
    )

    async def go() -> None:
        gw = Gateway(ws)
        c = client(gw, gateway_project.token_a)
        msg = [{"role": "user", "content": "stream please"}]
        before = upstream.calls.copy()
        stream = await c.chat.completions.create(model="s", messages=msg, stream=True)
        text = "".join([ch.delta.content or "" async for chunk in stream for ch in chunk.choices])
        assert text.strip() == "upstream ok says: stream please"
        assert upstream.calls["broken"] - before["broken"] == 1

        # after the first token, no fallback is possible: the stream ends with an error event
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ws, llm_gateway=gw)), base_url="http://gw")
        r = await http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": msg, "stream": True},
            headers={"authorization": f"Bearer {gateway_project.token_a}"},
        )
        assert r.status_code == 200
        events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        assert json.loads(events[1])["choices"][0]["delta"]["content"] == "upstream "
        assert "error" in json.loads(events[-1]) and upstream.calls["ok"] == before["ok"] + 1
        await gw.aclose()

    run(go())


def test_circuit_breaker_cools_down_a_failing_provider(gateway_project: Any, upstream: Any) -> None:
    ws = gateway_project(
        {
            "providers": {"flaky": upstream_spec(upstream, max_retries=0)},
            "aliases": {"c": ["flaky:fail", "local:x"]},
            "cache": {"exact": False},
            "circuit_breaker": {"failures": 2, "cooldown_s": 0.4},
        }
    )

    async def go() -> None:
        gw = Gateway(ws)
        body = {"model": "c", "messages": [{"role": "user", "content": "hi"}]}
        key = gw.authenticate(f"Bearer {gateway_project.token_a}")
        start = upstream.calls["fail"]
        for _ in range(2):
            assert (await gw.chat(body, key)).headers["x-steward-provider"] == "local:x"
        assert upstream.calls["fail"] - start == 2 and gw.breaker.state("flaky") == "open"
        for _ in range(3):  # open: the failing provider is skipped, not called
            assert (await gw.chat(body, key)).headers["x-steward-provider"] == "local:x"
        assert upstream.calls["fail"] - start == 2
        await asyncio.sleep(0.45)
        assert gw.breaker.state("flaky") == "half_open"
        await gw.chat(body, key)  # one trial request goes through, fails, and re-opens the circuit
        assert upstream.calls["fail"] - start == 3 and gw.breaker.state("flaky") == "open"
        await gw.aclose()

    run(go())


def test_anthropic_translation_plain_tools_and_stream(gateway_project: Any, upstream: Any) -> None:
    ws = gateway_project(
        {
            "providers": {"claude": {"kind": "anthropic", "base_url": upstream.url, "timeout_s": 2}},
            "aliases": {"smart": ["claude:claude-x-2025-01-01"]},
            "cache": {"exact": False},
        }
    )
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
        }
    ]

    async def go() -> None:
        gw = Gateway(ws)
        c = client(gw, gateway_project.token_a)
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]
        resp = await c.chat.completions.create(model="smart", messages=msgs, max_tokens=50)
        assert resp.choices[0].message.content == "Bonjour from Claude."
        assert resp.usage.prompt_tokens == 21 and resp.usage.completion_tokens == 9  # type: ignore[union-attr]
        sent = upstream.last_anthropic
        assert (
            sent["system"] == "Be brief."
            and sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}]
            and sent["max_tokens"] == 50
        )

        resp = await c.chat.completions.create(model="smart", messages=msgs, tools=tools, tool_choice="required")
        call = resp.choices[0].message.tool_calls[0]
        assert (
            resp.choices[0].finish_reason == "tool_calls"
            and call.function.name == "get_weather"
            and json.loads(call.function.arguments) == {"city": "Paris"}
        )
        assert (
            upstream.last_anthropic["tool_choice"] == {"type": "any"}
            and upstream.last_anthropic["tools"][0]["input_schema"]["type"] == "object"
        )

        follow = [
            *msgs,
            resp.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ]
        stream = await c.chat.completions.create(model="smart", messages=follow, stream=True)
        text = "".join([ch.delta.content or "" async for chunk in stream for ch in chunk.choices])
        assert text == "Bonjour from Claude."
        sent = upstream.last_anthropic["messages"]
        assert [b["type"] for b in sent[1]["content"]] == ["text", "tool_use"] and sent[2]["content"][0] == {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": "sunny",
        }

        stream = await c.chat.completions.create(model="smart", messages=msgs, tools=tools, stream=True)
        args, name = "", None
        async for chunk in stream:
            for ch in chunk.choices:
                for tc in ch.delta.tool_calls or []:
                    name = name or (tc.function.name if tc.function else None)
                    args += (tc.function.arguments or "") if tc.function else ""
        assert name == "get_weather" and json.loads(args) == {"city": "Paris"}
        await gw.aclose()

    run(go())


def test_embeddings_through_the_openai_client(gateway_project: Any) -> None:
    import numpy as np

    ws = gateway_project({"aliases": {"embed": ["local:minilm"]}})

    def embed(texts: list[str]) -> Any:
        out = np.zeros((len(texts), 4), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, len(t) % 4] = 1.0
        return out

    async def go() -> None:
        gw = Gateway(ws, embed=embed)
        c = client(gw, gateway_project.token_a)
        resp = await c.embeddings.create(model="embed", input=["abc", "abcd"])
        assert [d.embedding for d in resp.data] == [[0, 0, 0, 1], [1, 0, 0, 0]]
        assert resp.usage.prompt_tokens > 0
        await gw.aclose()

    run(go())


def test_metrics_endpoint_and_shutdown_flush(gateway_project: Any) -> None:
    ws = gateway_project({"cache": {"exact": True}})

    async def go() -> None:
        app = create_app(ws)
        async with app.router.lifespan_context(app):
            http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
            auth = {"authorization": f"Bearer {gateway_project.token_a}"}
            body = {"model": "local:x", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(2):
                assert (await http.post("/v1/chat/completions", json=body, headers=auth)).status_code == 200
            text = (await http.get("/metrics")).text
            assert 'steward_llm_requests_total{model="local:x",provider="local",status="ok"}' in text
            assert 'steward_llm_cache_requests_total{kind="exact",result="hit"}' in text
        # the lifespan's end closed the gateway, which wrote its usage rows
        rows = ws.metadata.fetchall("SELECT cache, status FROM llm_usage ORDER BY created_at")
        assert [(r["cache"], r["status"]) for r in rows] == [("miss", "ok"), ("exact", "ok")]

    run(go())


def test_spec_rejects_literal_secrets_and_unknown_keys(tmp_path: Any) -> None:
    from steward.errors import SpecError
    from steward.spec import load_spec

    (tmp_path / "steward.yaml").write_text("project: p\nllm:\n  gateway:\n    keys:\n      a: {key_env: 'sk-live-1234'}\n")
    with pytest.raises(SpecError) as exc:
        load_spec(tmp_path / "steward.yaml")
    assert "llm.gateway.keys.a.key_env" in exc.value.message
    (tmp_path / "steward.yaml").write_text("project: p\nllm:\n  gateway:\n    cache: {treshold: 0.9}\n")
    with pytest.raises(SpecError) as exc:
        load_spec(tmp_path / "steward.yaml")
    assert "did you mean 'threshold'" in exc.value.message


def test_circuit_breaker_states_with_a_fake_clock() -> None:
    from steward.llm.gateway import CircuitBreaker

    now = [0.0]
    cb = CircuitBreaker(failures=2, cooldown_s=10, clock=lambda: now[0])
    cb.failure("p")
    assert cb.allow("p") and cb.state("p") == "closed"
    cb.failure("p")
    assert cb.state("p") == "open" and not cb.allow("p")
    now[0] = 10.0
    assert cb.state("p") == "half_open" and cb.allow("p") and not cb.allow("p")  # one trial at a time
    cb.abandon("p")  # the trial ended without news (our own pool was full): the slot is free again
    assert cb.allow("p")
    cb.success("p")
    assert cb.state("p") == "closed" and cb.allow("p") and cb.allow("p")


def test_the_gateway_reads_keys_like_the_api(gateway_project: Any) -> None:
    ws = gateway_project()
    gw = Gateway(ws)
    token = gateway_project.token_a
    for header in (f"Bearer {token}", f"bearer  {token} ", f"BEARER {token}"):
        assert gw.authenticate(header).name == "team-a"
    for header in (None, "Basic abc", "Bearer ", f"Token {token}"):
        with pytest.raises(AuthError, match="missing bearer token"):
            gw.authenticate(header)
    with pytest.raises(AuthError, match="invalid gateway key"):
        gw.authenticate(f"Bearer {token}x")
