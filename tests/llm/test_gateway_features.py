"""Caching (exact, semantic, TTL, switch), structured outputs, prompt versions on traces, and the costs CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from prometheus_client import REGISTRY

from steward.api.app import create_app
from steward.llm.gateway import Gateway
from steward.llm.prompts import PromptRegistry, content_version
from steward.observability.tracing import recent_traces

CONTEXT = "The gateway caches answers. Paris is the capital of France. Budgets are atomic."


def bag_of_words(texts: list[str]) -> Any:
    """A tiny deterministic embedder: hashed bag of lower-cased words, L2-normalised."""
    out = np.zeros((len(texts), 64), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"[a-z]+", t.lower()):
            out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1.0
        out[i] /= max(np.linalg.norm(out[i]), 1e-9)
    return out


def client(gw: Gateway, token: str) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gw.ws, llm_gateway=gw)), base_url="http://gw")
    return openai.AsyncOpenAI(api_key=token, base_url="http://gw/v1", http_client=http, max_retries=0)


def hits(kind: str, result: str) -> float:
    return REGISTRY.get_sample_value("steward_llm_cache_requests_total", {"kind": kind, "result": result}) or 0.0


def msgs(question: str, system: str = CONTEXT) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def test_exact_cache_hit_miss_switch_and_ttl(gateway_project: Any) -> None:
    ws = gateway_project({"cache": {"exact": True, "ttl_s": 0.5}})

    async def go() -> None:
        gw = Gateway(ws)
        local = gw.provider("local")
        c = client(gw, gateway_project.token_a)
        m = msgs("What is the capital of France?")
        h0, m0 = hits("exact", "hit"), hits("exact", "miss")
        first = await c.chat.completions.with_raw_response.create(model="local:x", messages=m)
        second = await c.chat.completions.with_raw_response.create(model="local:x", messages=m, user="someone-else")
        assert first.headers["x-steward-cache"] == "miss" and second.headers["x-steward-cache"] == "exact"
        assert second.parse().choices[0].message.content == first.parse().choices[0].message.content == "Paris is the capital of France."
        assert local.calls == 1  # type: ignore[attr-defined]
        assert hits("exact", "hit") - h0 == 1 and hits("exact", "miss") - m0 == 1
        # a streamed request is served from the cache too
        stream = await c.chat.completions.create(model="local:x", messages=m, stream=True)
        assert "".join([ch.delta.content or "" async for chunk in stream for ch in chunk.choices]) == "Paris is the capital of France."
        assert local.calls == 1  # type: ignore[attr-defined]
        # per-request switch: header and body field
        off = await c.chat.completions.with_raw_response.create(model="local:x", messages=m, extra_headers={"x-steward-cache": "off"})
        assert off.headers["x-steward-cache"] == "off" and local.calls == 2  # type: ignore[attr-defined]
        await c.chat.completions.create(model="local:x", messages=m, extra_body={"cache": "off"})
        assert local.calls == 3  # type: ignore[attr-defined]
        # a different parameter is a different entry
        await c.chat.completions.create(model="local:x", messages=m, temperature=0.3)
        assert local.calls == 4  # type: ignore[attr-defined]
        time.sleep(0.55)  # TTL
        again = await c.chat.completions.with_raw_response.create(model="local:x", messages=m)
        assert again.headers["x-steward-cache"] == "miss" and local.calls == 5  # type: ignore[attr-defined]
        await gw.aclose()

    asyncio.run(go())


def test_semantic_cache_scoped_by_model_and_prompt_version(gateway_project: Any) -> None:
    ws = gateway_project({"cache": {"exact": False, "semantic": True, "threshold": 0.95, "ttl_s": 60}})

    async def go() -> None:
        gw = Gateway(ws, embed=bag_of_words)
        local = gw.provider("local")
        c = client(gw, gateway_project.token_a)
        s0 = hits("semantic", "hit")
        a = await c.chat.completions.with_raw_response.create(model="local:x", messages=msgs("What is the capital of France?"))
        b = await c.chat.completions.with_raw_response.create(model="local:x", messages=msgs("what is the CAPITAL of France"))
        assert a.headers["x-steward-cache"] == "miss" and b.headers["x-steward-cache"] == "semantic"
        assert b.parse().choices[0].message.content == a.parse().choices[0].message.content
        assert local.calls == 1 and hits("semantic", "hit") - s0 == 1  # type: ignore[attr-defined]
        d = await c.chat.completions.with_raw_response.create(model="local:x", messages=msgs("Are budgets atomic?"))
        assert d.headers["x-steward-cache"] == "miss"
        # same question, other prompt version (system prompt) or other model: no hit
        e = await c.chat.completions.with_raw_response.create(
            model="local:x", messages=msgs("What is the capital of France?", system="Paris is lovely.")
        )
        f = await c.chat.completions.with_raw_response.create(model="local:y", messages=msgs("What is the capital of France?"))
        assert e.headers["x-steward-cache"] == "miss" and f.headers["x-steward-cache"] == "miss"
        assert local.calls == 4  # type: ignore[attr-defined]
        await gw.aclose()

    asyncio.run(go())


def test_semantic_cache_never_serves_another_answer_shape(gateway_project: Any) -> None:
    ws = gateway_project({"cache": {"exact": False, "semantic": True, "threshold": 0.95, "ttl_s": 60}})

    async def go() -> None:
        gw = Gateway(ws, embed=bag_of_words)
        local = gw.provider("local")
        c = client(gw, gateway_project.token_a)
        m = msgs("What is the capital of France?")
        plain = await c.chat.completions.with_raw_response.create(model="local:x", messages=m)
        assert plain.headers["x-steward-cache"] == "miss"
        # the same question with a JSON schema: not the plain-text answer from the semantic cache, a JSON one
        structured = await c.chat.completions.with_raw_response.create(model="local:x", messages=m, response_format=FORMAT)
        assert structured.headers["x-steward-cache"] == "miss"
        assert set(json.loads(structured.parse().choices[0].message.content or "")) == {"answer", "score"}
        assert local.calls == 2  # type: ignore[attr-defined]
        # requests of one shape still share answers by similarity
        again = await c.chat.completions.with_raw_response.create(
            model="local:x", messages=msgs("what is the CAPITAL of France"), response_format=FORMAT
        )
        assert again.headers["x-steward-cache"] == "semantic"
        assert again.parse().choices[0].message.content == structured.parse().choices[0].message.content
        # temperature and max_tokens are part of the scope too
        for extra in ({"temperature": 0.9}, {"max_tokens": 7}):
            r = await c.chat.completions.with_raw_response.create(model="local:x", messages=m, **extra)  # type: ignore[call-overload]
            assert r.headers["x-steward-cache"] == "miss", extra
        assert local.calls == 4  # type: ignore[attr-defined]
        await gw.aclose()

    asyncio.run(go())


def test_cache_scope_and_key_cover_the_answer_shape() -> None:
    from steward.llm.gateway._cache import cache_key, cache_scope

    base = {"messages": [{"role": "user", "content": "hi"}]}
    variants = [
        {"response_format": FORMAT},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
        {"tool_choice": "required"},
        {"temperature": 0.2},
        {"max_tokens": 9},
    ]
    scopes = {cache_scope("m", "none", {**base, **v}) for v in variants} | {cache_scope("m", "none", base)}
    keys = {cache_key("m", "none", {**base, **v}) for v in variants} | {cache_key("m", "none", base)}
    assert len(scopes) == len(keys) == len(variants) + 1
    # fields that do not shape the answer leave the scope alone
    assert cache_scope("m", "none", {**base, "stream": True, "user": "u"}) == cache_scope("m", "none", base)


SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "score": {"type": "integer", "minimum": 1}},
    "required": ["answer", "score"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "graded", "schema": SCHEMA}}


def test_structured_output_repair_then_error(gateway_project: Any) -> None:
    ws = gateway_project({"cache": {"exact": False}})

    async def go() -> None:
        gw = Gateway(ws)
        local = gw.provider("local")
        c = client(gw, gateway_project.token_a)
        m = msgs("What is the capital of France?")
        # the offline provider follows the schema by itself
        resp = await c.chat.completions.create(model="local:x", messages=m, response_format=FORMAT)
        assert json.loads(resp.choices[0].message.content or "") == {"answer": "Paris is the capital of France.", "score": 1}
        # invalid, then repaired
        local.script("not json at all", '{"answer": "Paris", "score": 3}')  # type: ignore[attr-defined]
        calls = local.calls  # type: ignore[attr-defined]
        resp = await c.chat.completions.create(model="local:x", messages=m, response_format=FORMAT)
        assert json.loads(resp.choices[0].message.content or "") == {"answer": "Paris", "score": 3}
        assert local.calls == calls + 2  # type: ignore[attr-defined]
        assert resp.usage is not None
        # invalid twice: a clear error naming the schema violation
        local.script('{"answer": "Paris"}', '{"answer": "Paris", "score": 0}')  # type: ignore[attr-defined]
        with pytest.raises(openai.APIStatusError) as exc:
            await c.chat.completions.create(model="local:x", messages=m, response_format=FORMAT)
        assert exc.value.status_code == 502
        body = exc.value.body
        assert body["steward_code"] == "llm.invalid_output" and "score" in body["errors"][0]  # type: ignore[index]
        # streamed structured output is validated before it is streamed
        local.script("{}", '{"answer": "Lyon", "score": 2}')  # type: ignore[attr-defined]
        stream = await c.chat.completions.create(model="local:x", messages=m, response_format=FORMAT, stream=True)
        text = "".join([ch.delta.content or "" async for chunk in stream for ch in chunk.choices])
        assert json.loads(text) == {"answer": "Lyon", "score": 2}
        await gw.aclose()

    asyncio.run(go())


def test_prompt_versions_and_traces(gateway_project: Any) -> None:
    template = "You help with {product}. Steward budgets are enforced atomically. The cache has a TTL.\n"
    ws = gateway_project(
        {"cache": {"exact": False}, "prices": {"x": {"input_per_1m": 2.0, "output_per_1m": 8.0}}}, prompts={"support.md": template}
    )
    reg = PromptRegistry(ws.spec.resolve("prompts"))
    v1 = reg.get("support").version
    assert v1 == content_version(template) and reg.names() == ["support"]

    async def go() -> None:
        gw = Gateway(ws)
        c = client(gw, gateway_project.token_a)
        q = [{"role": "user", "content": "How are budgets enforced?"}]
        raw = await c.chat.completions.with_raw_response.create(
            model="local:x", messages=q, extra_body={"steward_prompt": {"name": "support", "variables": {"product": "Steward"}}}
        )
        assert raw.headers["x-steward-prompt-version"] == f"support@{v1}"
        assert raw.parse().choices[0].message.content == "Steward budgets are enforced atomically."
        (ws.spec.resolve("prompts") / "support.md").write_text(template + "Answer briefly.\n")
        raw2 = await c.chat.completions.with_raw_response.create(
            model="local:x", messages=q, extra_body={"steward_prompt": {"name": "support", "variables": {"product": "Steward"}}}
        )
        v2 = raw2.headers["x-steward-prompt-version"]
        assert v2.startswith("support@") and v2 != f"support@{v1}"
        await c.chat.completions.create(model="local:x", messages=msgs("Is the cache atomic?"))
        with pytest.raises(openai.NotFoundError):
            await c.chat.completions.create(model="local:x", messages=q, extra_body={"steward_prompt": {"name": "missing"}})
        gw.flush()
        spans = recent_traces(ws, 10, name="llm.chat")
        assert [s["attributes"]["llm.prompt_version"] for s in spans[:3]] == [f"inline@{content_version(CONTEXT)}", v2, f"support@{v1}"]
        attrs = spans[1]["attributes"]
        usage = raw2.parse().usage
        assert attrs["llm.tokens_in"] == usage.prompt_tokens and attrs["llm.tokens_out"] == usage.completion_tokens  # type: ignore[union-attr]
        assert attrs["llm.cost_usd"] == pytest.approx((usage.prompt_tokens * 2 + usage.completion_tokens * 8) / 1e6)  # type: ignore[union-attr]
        assert attrs["llm.provider"] == "local" and attrs["llm.model"] == "local:x" and attrs["llm.cache_hit"] is False
        assert attrs["llm.latency_ms"] > 0 and spans[1]["status"] == "UNSET"
        await gw.aclose()

    asyncio.run(go())


def test_costs_cli_by_key_model_day_and_projection(gateway_project: Any) -> None:
    from typer.testing import CliRunner

    from steward.cli.app import app

    ws = gateway_project({"cache": {"exact": False}, "prices": {"local:x": {"input_per_1m": 1000, "output_per_1m": 3000}}})

    async def go() -> dict[str, float]:
        gw = Gateway(ws)
        spent = {"team-a": 0.0, "team-b": 0.0}
        for token, name, n in ((gateway_project.token_a, "team-a", 3), (gateway_project.token_b, "team-b", 1)):
            c = client(gw, token)
            for i in range(n):
                raw = await c.chat.completions.with_raw_response.create(
                    model="local:x", messages=msgs(f"Question {i}: is Paris the capital?")
                )
                spent[name] += float(raw.headers["x-steward-cost-usd"])
        await c.chat.completions.create(model="local:y", messages=msgs("Unpriced model?"))
        await gw.aclose()
        return spent

    spent = asyncio.run(go())
    result = CliRunner().invoke(app, ["--spec", str(ws.spec.spec_path), "llm", "costs", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    by_key = {r["name"]: r for r in report["by_key"]}
    assert by_key["team-a"]["requests"] == 3 and by_key["team-a"]["cost_usd"] == pytest.approx(spent["team-a"], abs=1e-5)
    assert by_key["team-b"]["requests"] == 2 and by_key["team-b"]["cost_usd"] == pytest.approx(spent["team-b"], abs=1e-5)
    by_model = {r["name"]: r for r in report["by_model"]}
    assert by_model["local:y"]["cost_usd"] == 0 and by_model["local:x"]["requests"] == 4
    assert report["total_usd"] == pytest.approx(sum(spent.values()), abs=1e-5) and len(report["by_day"]) == 1
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    import calendar

    assert report["projected_month_usd"] == pytest.approx(
        report["month_to_date_usd"] / now.day * calendar.monthrange(now.year, now.month)[1]
    )
    table = CliRunner().invoke(app, ["--spec", str(ws.spec.spec_path), "llm", "costs"])
    assert table.exit_code == 0 and "team-a" in table.stdout and "projected for the month" in table.stdout
