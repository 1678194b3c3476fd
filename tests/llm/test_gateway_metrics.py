"""LLM metrics and spans: refusals get their own status, latency carries model and provider, spans speak GenAI."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest
from prometheus_client import REGISTRY

from steward.api.app import create_app
from steward.llm.gateway import Gateway
from steward.observability.tracing import flush, recent_traces

MSG = [{"role": "user", "content": "Budgets are enforced. How are budgets enforced?"}]


def _count(status: str) -> float:
    """steward_llm_requests_total summed over models and providers for one status."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "steward_llm_requests":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total") and s.labels.get("status") == status)
    return total


def test_refusals_have_their_own_status_and_latency_has_model_and_provider(gateway_project: Any) -> None:
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
    before = {s: _count(s) for s in ("refused_budget", "refused_rate", "error", "ok")}

    async def go() -> None:
        gw = Gateway(ws)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ws, llm_gateway=gw)), base_url="http://gw")
        a = openai.AsyncOpenAI(api_key=gateway_project.token_a, base_url="http://gw/v1", http_client=http, max_retries=0)
        b = openai.AsyncOpenAI(api_key=gateway_project.token_b, base_url="http://gw/v1", http_client=http, max_retries=0)
        with pytest.raises(openai.RateLimitError):
            await a.chat.completions.create(model="chat", messages=MSG, max_tokens=1000)  # type: ignore[arg-type]
        await b.chat.completions.create(model="chat", messages=MSG, max_tokens=5)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError):
            await b.chat.completions.create(model="chat", messages=MSG, max_tokens=5)  # type: ignore[arg-type]
        await gw.aclose()
        await http.aclose()

    asyncio.run(go())
    after = {s: _count(s) for s in before}
    assert after["refused_budget"] - before["refused_budget"] == 1
    assert after["refused_rate"] - before["refused_rate"] == 1
    assert after["error"] == before["error"]  # refusals do not count as errors of the service
    assert after["ok"] - before["ok"] == 1
    assert REGISTRY.get_sample_value("steward_llm_request_seconds_count", {"model": "chat", "provider": "local"}) is not None

    flush(ws)
    spans = [s for s in recent_traces(ws, 20, name="llm.chat") if s["attributes"].get("llm.status") == "ok"]
    attrs = spans[0]["attributes"]
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.request.model"] == "chat"
    assert attrs["gen_ai.provider.name"] == "local" and attrs["gen_ai.response.model"] == "x"
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
