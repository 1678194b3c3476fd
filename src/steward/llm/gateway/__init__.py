"""The OpenAI-compatible LLM gateway: providers, fallbacks, budgets, caching, structured outputs, tracing.

Configured under ``llm.gateway`` in ``steward.yaml``::

    llm:
      gateway:
        providers:
          vllm: {kind: openai, base_url: "http://127.0.0.1:8001/v1", timeout_s: 20, max_retries: 1}
          claude: {kind: anthropic, api_key_env: ANTHROPIC_API_KEY}
        aliases:                       # ordered fallback chains of provider:pinned-model
          chat-default: ["vllm:llama-3.1-8b-2025-01-01", "claude:claude-x-2025-01-01", "local:extractive"]
        keys:                          # secrets come from environment variables, never from the spec
          team-a: {key_env: STEWARD_KEY_TEAM_A, team: a, budget: {tokens: 2000000, usd: 50, period: month},
                   rate_limit: {requests_per_minute: 600, tokens_per_minute: 200000}}
        teams: {a: {budget: {usd: 200, period: month}, rate_limit: {requests_per_minute: 1200}}}
        prices: {"vllm:llama-3.1-8b-2025-01-01": {input_per_1m: 0.2, output_per_1m: 0.6}}
        cache: {exact: true, semantic: false, threshold: 0.95, ttl_s: 3600}
        circuit_breaker: {failures: 5, cooldown_s: 30}
        tracing: {otlp_endpoint: null}

A ``local`` provider (offline, extractive, deterministic) always exists. Budgets,
rate limits and the exact cache live in SQLite under ROOT, or in Redis when
``storage.cache_url`` is ``redis://...``. Per request: header ``x-steward-cache: off``
(or body ``cache: "off"``) skips the cache; body ``steward_prompt: {name, variables}``
prepends a versioned prompt from ``prompts/``. Answers carry ``x-steward-request-id``,
``x-steward-provider``, ``x-steward-cache``, ``x-steward-prompt-version`` and
``x-steward-cost-usd`` headers. The ``llm.guardrails`` guards run on user messages and
answers (block → 422 ``guardrail.<guard>``, redact, flag); their verdicts are in
``x-steward-guardrails`` (``flagged:injection``) and on the span (``guardrails.verdicts``).
Teams may have a rate limit too, shared by their keys.

Usage::

    from steward.llm.gateway import Gateway

    gw = Gateway(ws)
    key = gw.authenticate("Bearer " + token)
    result = await gw.chat({"model": "chat-default", "messages": [...]}, key)
    result.response           # an OpenAI chat.completion dict (or result.stream: SSE bytes)
"""

from steward.llm.gateway._budget import BudgetEnforcer, GatewayKey, Reservation
from steward.llm.gateway._cache import ExactCache, SemanticCache
from steward.llm.gateway._errors import BudgetExceeded, InvalidOutput, ProviderError, RateLimited, UnknownModel, UpstreamRejected
from steward.llm.gateway._gateway import METRICS, ChatResult, Gateway
from steward.llm.gateway._messages_api import chat_body, message_events, to_message
from steward.llm.gateway._providers import AnthropicProvider, LocalProvider, OpenAIProvider, Provider, extractive_answer
from steward.llm.gateway._router import CircuitBreaker, Router, Target
from steward.llm.gateway._tokens import count_messages, count_text
from steward.llm.gateway._usage import CostReport, UsageRecorder, cost_report, daily_spend, spend_per_day

__all__ = [
    "METRICS",
    "AnthropicProvider",
    "BudgetEnforcer",
    "BudgetExceeded",
    "ChatResult",
    "CircuitBreaker",
    "CostReport",
    "ExactCache",
    "Gateway",
    "GatewayKey",
    "InvalidOutput",
    "LocalProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderError",
    "RateLimited",
    "Reservation",
    "Router",
    "SemanticCache",
    "Target",
    "UnknownModel",
    "UpstreamRejected",
    "UsageRecorder",
    "chat_body",
    "cost_report",
    "count_messages",
    "count_text",
    "daily_spend",
    "extractive_answer",
    "message_events",
    "spend_per_day",
    "to_message",
]
