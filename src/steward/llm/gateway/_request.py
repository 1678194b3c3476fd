"""One gateway request: its state, its checks, and its bookkeeping once it ends.

The bookkeeping (:func:`finish_request`) runs exactly once per request, whatever the outcome:
the budget reservation is settled, a usage row is written, the Prometheus metrics count it and
the ``llm.chat`` / ``llm.embeddings`` span ends with the request's attributes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry.trace import Status, StatusCode
from prometheus_client import Counter, Histogram

from steward.errors import StewardError, ValidationFailed
from steward.llm.gateway._budget import MICRO, BudgetEnforcer, GatewayKey, Reservation
from steward.llm.gateway._cache import CACHE_REQUESTS
from steward.llm.gateway._guard import Verdict, verdict_header
from steward.llm.gateway._router import Attempts, Target
from steward.llm.gateway._tokens import count_messages, count_text
from steward.llm.gateway._usage import UsageRecorder
from steward.observability.tracing import set_attributes

if TYPE_CHECKING:
    from opentelemetry.trace import Span

logger = logging.getLogger(__name__)

__all__ = [
    "METRICS",
    "ChatResult",
    "Req",
    "add_usage",
    "check_contents",
    "finish_request",
    "guard_header",
    "has_tool_calls",
    "message_content",
    "metric_status",
    "sse",
]

REQUESTS = Counter("steward_llm_requests", "LLM gateway requests", ["model", "provider", "status"])
TOKENS = Counter("steward_llm_tokens", "LLM gateway tokens", ["direction"])
COST = Counter("steward_llm_cost_usd", "LLM gateway spend in US dollars")
LATENCY = Histogram(
    "steward_llm_request_seconds",
    "LLM gateway request latency",
    # model is the requested alias or provider:model of the spec, provider a configured provider name: both bounded
    ["model", "provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

METRICS = (REQUESTS, TOKENS, COST, LATENCY, CACHE_REQUESTS)

_REQUEST_COUNTERS: dict[tuple[str, str, str], Any] = {}
_TOKENS_IN = TOKENS.labels("in")
_TOKENS_OUT = TOKENS.labels("out")


def metric_status(status: str, error: BaseException | None) -> str:
    """The ``status`` label: refusals by our own budgets and rate limits are not errors of the service.

    ``refused_budget`` and ``refused_rate`` keep an exhausted budget or a client over its rate limit out of the
    error rate that SLOs and alerts read; every upstream being rate-limited is ``upstream_rate_limited``.
    """
    code = getattr(error, "code", "") if error is not None else ""
    if code == "limit.budget":
        return "refused_budget"
    if code == "limit.rate":
        return "refused_rate"
    if code == "llm.providers_rate_limited":
        return "upstream_rate_limited"
    return status


def _count_request(model: str, provider: str, status: str) -> None:
    # labels() takes a lock and builds a key each call: keep the children.
    key = (model, provider, status)
    child = _REQUEST_COUNTERS.get(key)
    if child is None:
        child = _REQUEST_COUNTERS[key] = REQUESTS.labels(model, provider, status)
    child.inc()


@dataclass
class ChatResult:
    """A gateway answer: a response body, or a stream of server-sent-event bytes, plus ``x-steward-*`` headers."""

    response: dict[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Req:
    """What the gateway tracks of one request from reservation to its usage row."""

    request_id: str
    key: GatewayKey
    model: str
    prompt_version: str
    span: Span
    t0: float
    reservation: Reservation | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    micro_usd: int = 0
    target: Target | None = None
    cache: str = "miss"
    attempts: Attempts = field(default_factory=Attempts)
    scope: str = ""
    verdicts: list[Verdict] = field(default_factory=list)


def sse(chunk: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying a chunk."""
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def has_tool_calls(response: dict[str, Any]) -> bool:
    """Whether a chat completion's answer is a tool call (the schema of a structured output then does not apply)."""
    try:
        return bool(response["choices"][0]["message"].get("tool_calls"))
    except (KeyError, IndexError, TypeError, AttributeError):
        return False


def check_contents(messages: list[dict[str, Any]]) -> None:
    """Refuse message content the chat schema does not allow: a string, null, or a list of typed parts.

    Raises:
        ValidationFailed: names the field (``messages[2].content``, ``messages[0].content[1].text``).
    """
    errors: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        content = m.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            errors.append(
                {
                    "field": f"messages[{i}].content",
                    "message": f"must be a string, null or a list of content parts, not {type(content).__name__}",
                }
            )
            continue
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                errors.append({"field": f"messages[{i}].content[{j}]", "message": "must be an object with a string 'type'"})
            elif part["type"] == "text" and not isinstance(part.get("text"), str):
                errors.append({"field": f"messages[{i}].content[{j}].text", "message": "must be a string"})
    if errors:
        raise ValidationFailed(
            f"invalid message content: {errors[0]['field']} {errors[0]['message']}",
            hint='send content as a string or as a list of parts such as {"type": "text", "text": "..."}',
            details={"errors": errors},
        )


def guard_header(headers: dict[str, str], req: Req) -> None:
    """Set ``x-steward-guardrails`` when a guard found something."""
    if req.verdicts:
        headers["x-steward-guardrails"] = verdict_header(req.verdicts)


def message_content(response: dict[str, Any]) -> str | None:
    """The text of a chat completion's answer (None when absent or malformed)."""
    try:
        content: str | None = response["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError):
        return None
    return content


def add_usage(
    req: Req, target: Target, response: dict[str, Any], body: dict[str, Any], cost_micro: Callable[[Target, int, int], int]
) -> None:
    """Add a provider answer's tokens and cost to the request."""
    # The provider's own counts win; the local tokenizer fills in when a provider reports none.
    usage = response.get("usage") or {}
    pin = usage.get("prompt_tokens")
    if pin is None:
        pin = count_messages(body["messages"], body.get("tools"))
    pin = int(pin)
    pout = usage.get("completion_tokens")
    if pout is None:
        message = (response.get("choices") or [{}])[0].get("message") or {}
        pout = count_text(message.get("content") or "") + (
            count_text(orjson.dumps(message["tool_calls"]).decode()) if message.get("tool_calls") else 0
        )
    req.prompt_tokens += pin
    req.completion_tokens += int(pout)
    req.micro_usd += cost_micro(target, pin, int(pout))


def finish_request(req: Req, status: str, error: BaseException | None, *, budget: BudgetEnforcer, usage: UsageRecorder) -> None:
    """Settle the budget, record usage, count metrics and end the span (exactly once per request)."""
    if req.reservation is not None:
        try:
            budget.settle(req.reservation, req.prompt_tokens + req.completion_tokens, req.micro_usd)
        except Exception:
            logger.exception("could not settle the budget of request %s", req.request_id)
    latency_ms = (time.perf_counter() - req.t0) * 1000
    target = req.target
    cost = req.micro_usd / MICRO
    is_limit = error is not None and isinstance(error, StewardError) and error.code.startswith("limit.")
    usage.record(
        {
            "request_id": req.request_id,
            "key_name": req.key.name,
            "team": req.key.team,
            "model": req.model,
            "provider": target.provider.name if target else None,
            "provider_model": target.model if target else None,
            "prompt_tokens": req.prompt_tokens,
            "completion_tokens": req.completion_tokens,
            "cost_usd": cost,
            "cache": req.cache,
            "status": "refused" if is_limit else status,
            "latency_ms": latency_ms,
            "prompt_version": req.prompt_version,
        }
    )
    provider = target.provider.name if target else ""
    _count_request(req.model, provider, metric_status(status, error))
    _TOKENS_IN.inc(req.prompt_tokens)
    _TOKENS_OUT.inc(req.completion_tokens)
    if cost:
        COST.inc(cost)
    LATENCY.labels(req.model, provider).observe(latency_ms / 1000)
    span = req.span
    set_attributes(
        span,
        {
            "llm.request_id": req.request_id,
            "llm.provider": target.provider.name if target else None,
            "llm.provider_model": target.model if target else None,
            "llm.tokens_in": req.prompt_tokens,
            "llm.tokens_out": req.completion_tokens,
            "llm.cost_usd": cost,
            "llm.latency_ms": round(latency_ms, 3),
            "llm.cache_hit": req.cache in ("exact", "semantic"),
            "llm.cache": req.cache,
            "llm.status": status,
            "llm.attempts": req.attempts.tried,
            # OpenTelemetry GenAI semantic conventions, for tools that read them
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": req.model,
            "gen_ai.provider.name": target.provider.name if target else None,
            "gen_ai.response.model": target.model if target else None,
            "gen_ai.usage.input_tokens": req.prompt_tokens,
            "gen_ai.usage.output_tokens": req.completion_tokens,
        },
    )
    if req.verdicts:
        span.set_attribute("guardrails.verdicts", verdict_header(req.verdicts))
        span.set_attribute("guardrails.findings", [f"{v.guard}:{v.detail}" for v in req.verdicts])
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        span.set_attribute("llm.error_code", getattr(error, "code", type(error).__name__))
    span.end()
