"""The gateway: authenticate, resolve, reserve, guard, cache, route, validate, guard, settle, record, trace."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import Counter, Histogram

from steward._primitives import request_id
from steward.errors import AuthError, StewardError, ValidationFailed
from steward.governance.access import KeyRing, bearer_token
from steward.governance.audit import record_if_changed
from steward.llm.gateway._budget import MICRO, BudgetEnforcer, GatewayKey, Reservation
from steward.llm.gateway._cache import CACHE_REQUESTS, ExactCache, SemanticCache, cache_key, cache_scope, default_embed, request_text
from steward.llm.gateway._errors import InvalidOutput, ProviderError
from steward.llm.gateway._guard import GatewayGuards, Verdict, raise_if_blocked, verdict_header
from steward.llm.gateway._providers import EmbedFn, LocalProvider, Provider, build_provider, response_to_chunks
from steward.llm.gateway._router import Attempts, CircuitBreaker, Router, Target
from steward.llm.gateway._structured import json_schema_of, repair_messages, validate_output
from steward.llm.gateway._tokens import count_messages, count_text
from steward.llm.gateway._usage import UsageRecorder
from steward.llm.guardrails import injection
from steward.llm.prompts import PromptRegistry, content_version
from steward.observability.gcfreeze import freeze_long_lived
from steward.observability.tracing import flush as flush_traces
from steward.observability.tracing import get_tracer, set_attributes

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from steward.backends.base import CacheStore, CounterStore
    from steward.spec import GuardrailsSpec
    from steward.workspace import Workspace

__all__ = ["METRICS", "ChatResult", "Gateway"]

logger = logging.getLogger(__name__)

REQUESTS = Counter("steward_llm_requests", "LLM gateway requests", ["model", "provider", "status"])
TOKENS = Counter("steward_llm_tokens", "LLM gateway tokens", ["direction"])
COST = Counter("steward_llm_cost_usd", "LLM gateway spend in US dollars")
LATENCY = Histogram(
    "steward_llm_request_seconds", "LLM gateway request latency", buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
)

METRICS = (REQUESTS, TOKENS, COST, LATENCY, CACHE_REQUESTS)

_REQUEST_COUNTERS: dict[tuple[str, str, str], Any] = {}
_TOKENS_IN = TOKENS.labels("in")
_TOKENS_OUT = TOKENS.labels("out")


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
class _Req:
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


def _sse(chunk: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _tool_calls(response: dict[str, Any]) -> bool:
    try:
        return bool(response["choices"][0]["message"].get("tool_calls"))
    except (KeyError, IndexError, TypeError, AttributeError):
        return False


def _warm_injection_scorer() -> None:
    injection.get_scorer()
    freeze_long_lived()  # its term tables live as long as the process: keep them out of every GC pass


def _check_contents(messages: list[dict[str, Any]]) -> None:
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


def _guard_header(headers: dict[str, str], req: _Req) -> None:
    if req.verdicts:
        headers["x-steward-guardrails"] = verdict_header(req.verdicts)


def _content(response: dict[str, Any]) -> str | None:
    try:
        content: str | None = response["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError):
        return None
    return content


class Gateway:
    """The OpenAI-compatible LLM gateway of a workspace.

    Args:
        ws: The workspace (its ``llm.gateway`` spec, metadata store and state root).
        counters: Budget / rate-limit counters (default: the workspace's, from ``storage.cache_url``).
        cache_store: Exact-cache store (default: the workspace's, from ``storage.cache_url``).
        embed: Embedding function for the semantic cache and the local provider's embeddings
            (default: :mod:`steward.llm.embeddings`, imported on first use).
        sleep: Backoff sleep, injected for tests.
        clock: Wall clock for budgets and cache TTLs, injected for tests.
    """

    def __init__(
        self,
        ws: Workspace,
        *,
        counters: CounterStore | None = None,
        cache_store: CacheStore | None = None,
        embed: EmbedFn | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ws = ws
        self.spec = ws.spec.llm.gateway
        self.providers: dict[str, Provider] = {}
        for name, p in self.spec.providers.items():
            if p.kind == "local":
                self.providers[name] = LocalProvider(name, embed_fn=embed, max_retries=p.max_retries)
            else:
                self.providers[name] = build_provider(
                    name, p.kind, base_url=p.base_url, api_key_env=p.api_key_env, timeout_s=p.timeout_s, max_retries=p.max_retries
                )
        self.providers.setdefault("local", LocalProvider("local", embed_fn=embed))
        cb = self.spec.circuit_breaker
        self.breaker = CircuitBreaker(cb.failures, cb.cooldown_s)
        self.router = Router(self.providers, self.spec.aliases, self.breaker, sleep=sleep)
        self.counters = counters if counters is not None else ws.counter_store
        self.budget = BudgetEnforcer(self.spec, self.counters, clock)
        c = self.spec.cache
        self.exact = ExactCache(cache_store if cache_store is not None else ws.cache_store, c.ttl_s) if c.exact else None
        self.semantic = SemanticCache(embed or default_embed, c.threshold, c.ttl_s, clock=clock) if c.semantic else None
        self.prompts = PromptRegistry(ws.spec.resolve(self.spec.prompts_dir))
        self.usage = UsageRecorder(ws.metadata)
        self.tracer = get_tracer(ws, "steward.llm.gateway")
        self.guards = GatewayGuards()
        self._keys: KeyRing[GatewayKey] = KeyRing()
        self._load_keys()
        self._audit_budgets()
        self._warm_guards()

    def _warm_guards(self) -> None:
        # The injection classifier loads its term tables on first use (about a second): do it now, off the first request's path.
        if self.ws.spec.llm.guardrails.injection.enabled and not injection.scorer_ready():
            threading.Thread(target=_warm_injection_scorer, name="steward-guardrails-warmup", daemon=True).start()

    # -- keys --------------------------------------------------------------
    def _audit_budgets(self) -> None:
        """Budget and rate-limit settings of every key and team go on the audit trail when they change."""
        try:
            for name, k in self.spec.keys.items():
                cfg = {
                    "team": k.team,
                    "budget": k.budget.model_dump() if k.budget else None,
                    "rate_limit": k.rate_limit.model_dump() if k.rate_limit else None,
                }
                record_if_changed(self.ws.audit, "budget.change", f"gateway-key:{name}", cfg)
            for name, t in self.spec.teams.items():
                record_if_changed(self.ws.audit, "budget.change", f"gateway-team:{name}", t.model_dump())
        except Exception:  # the trail must never stop the gateway from starting
            logger.exception("could not record budget settings on the audit trail")

    def _load_keys(self) -> None:
        keys = []
        for name, k in self.spec.keys.items():
            secret = os.environ.get(k.key_env)
            if not secret:
                logger.warning("gateway key %s: environment variable %s is not set; the key is disabled", name, k.key_env)
                continue
            keys.append((secret, GatewayKey(name, k)))
        self._keys = KeyRing(keys)

    def authenticate(self, authorization: str | None) -> GatewayKey:
        """The key of an ``Authorization: Bearer ...`` header (compared in constant time).

        Raises:
            AuthError: no header, or no key matches.
        """
        token = bearer_token(authorization)
        if token is None:
            raise AuthError("missing bearer token", hint="send 'Authorization: Bearer <gateway key>'")
        for attempt in range(2):
            found = self._keys.find(token)  # constant time over every key
            if found is not None:
                return found
            if attempt == 0:
                self._load_keys()  # a key's environment variable may have been set since start-up
        raise AuthError("invalid gateway key", hint="keys are declared in llm.gateway.keys and read from their key_env variables")

    def provider(self, name: str) -> Provider:
        """A provider by name (tests script the local one)."""
        return self.providers[name]

    # -- pricing -----------------------------------------------------------
    def _price(self, target: Target) -> tuple[float, float]:
        p = self.spec.prices.get(target.ref) or self.spec.prices.get(target.model)
        return (p.input_per_1m, p.output_per_1m) if p else (0.0, 0.0)

    def cost_micro(self, target: Target, prompt_tokens: int, completion_tokens: int) -> int:
        """Cost of a call in micro-dollars (prices are per 1M tokens, so it is a plain weighted sum)."""
        pin, pout = self._price(target)
        return round(prompt_tokens * pin + completion_tokens * pout)

    # -- chat --------------------------------------------------------------
    def _prepare(self, body: dict[str, Any]) -> tuple[dict[str, Any], str, bool | None]:
        model = body.get("model")
        messages = body.get("messages")
        if not isinstance(model, str) or not model:
            raise ValidationFailed("'model' is required", details={"errors": [{"field": "model", "message": "required"}]})
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise ValidationFailed(
                "'messages' must be a non-empty list of messages", details={"errors": [{"field": "messages", "message": "required"}]}
            )
        _check_contents(messages)
        body = dict(body)
        switch = body.pop("cache", None)
        ref = body.pop("steward_prompt", None)
        cache: bool | None = None
        if switch is not None:
            cache = switch not in (False, "off", "false", "0", "no", 0)
        if ref:
            if isinstance(ref, str):
                ref = {"name": ref}
            prompt = self.prompts.get(str(ref.get("name")), ref.get("version"))
            text = prompt.render(ref.get("variables") or {})
            body["messages"] = [{"role": "system", "content": text}, *messages]
            return body, prompt.ref, cache
        system = "\n".join(str(m.get("content") or "") for m in messages if m.get("role") in ("system", "developer"))
        return body, (f"inline@{content_version(system)}" if system else "none"), cache

    async def chat(
        self,
        body: dict[str, Any],
        key: GatewayKey,
        *,
        cache: bool | None = None,
        trace: Mapping[str, Any] | None = None,
        guard: bool = True,
    ) -> ChatResult:
        """Answer an OpenAI chat-completions request.

        The ``llm.guardrails`` guards apply (see :mod:`steward.llm.gateway._guard`): the injection guard
        to every message's text (user, system, developer, assistant and tool: all of it comes from the
        caller), the PII input guard to ``user`` messages, before the cache and the provider see them, the
        output guard (PII leak) to the answer. ``block`` refuses, ``redact`` masks, ``flag`` passes;
        the verdicts go on the span (``guardrails.verdicts``) and in the ``x-steward-guardrails``
        header. A streamed answer (relayed as it comes) cannot be taken back: its output findings are
        recorded on the span as ``flagged`` once the stream ends, and the cache keeps the redacted
        text (nothing when the action is ``block``).

        Args:
            body: The request body (``stream``, ``tools``, ``response_format`` supported). Gateway
                extensions: ``cache: "off"`` and ``steward_prompt: {name, version?, variables?}``.
            key: The authenticated key (see :meth:`authenticate`).
            cache: Per-request cache switch (``x-steward-cache`` header); overrides the body's.
            trace: Extra span attributes (e.g. ``rag.chunk_ids``, ``agent.run_id``).
            guard: Run the guardrails. In-process callers that run the same guards on their own
                user text (RAG, whose prompt also carries retrieved documents) pass False; the
                HTTP edge never does.

        Raises:
            RateLimited, BudgetExceeded: refused before any provider is called.
            ValidationFailed: a guard with action ``block`` fired (code ``guardrail.<guard>``).
            ProviderError: every provider in the chain failed.
            InvalidOutput: the answer did not match the JSON schema after one repair.
        """
        t0 = time.perf_counter()
        body, prompt_version, body_cache = self._prepare(body)
        use_cache = cache if cache is not None else (body_cache if body_cache is not None else True)
        model: str = body["model"]
        targets = self.router.resolve(model)
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        body.pop("stream_options", None)
        schema = json_schema_of(body)
        span = self.tracer.start_span(
            "llm.chat",
            attributes={"llm.model": model, "llm.prompt_version": prompt_version, "llm.key": key.name, "llm.stream": stream},
        )
        if trace:
            set_attributes(span, trace)
        req = _Req(request_id(), key, model, prompt_version, span, t0)
        headers = {"x-steward-request-id": req.request_id, "x-steward-prompt-version": prompt_version}
        try:
            # Reserve first: rate limits count every request, and a key over budget gets nothing, cached or not.
            est_in = count_messages(body["messages"], body.get("tools"), approx=True)
            est_out = int(body.get("max_tokens") or body.get("max_completion_tokens") or self.spec.default_max_tokens)
            est_micro = max(self.cost_micro(t, est_in, est_out) for t in targets)
            req.reservation = self.budget.reserve(key, est_in + est_out, est_micro)
            # Guard before the cache: a blocked request gets nothing, and redacted text is what is hashed, embedded and sent.
            gspec = self.ws.spec.llm.guardrails if guard else None
            if gspec is not None and not GatewayGuards.active(gspec):
                gspec = None
            if gspec is not None:
                body["messages"], found = self.guards.check_input(gspec, body["messages"])
                req.verdicts.extend(found)
                raise_if_blocked(found, "request")
            ckey = None
            vector = None
            hit: dict[str, Any] | None = None
            if not use_cache:
                req.cache = "off"
            else:
                if self.exact is not None:
                    ckey = cache_key(model, prompt_version, body)
                    hit = self.exact.get(ckey)
                    req.cache = "exact" if hit is not None else "miss"
                if hit is None and self.semantic is not None and not body.get("tools"):
                    req.scope = cache_scope(model, prompt_version, body)
                    vector = await asyncio.to_thread(self.semantic.vector, request_text(body))
                    similar = self.semantic.get(req.scope, vector)
                    if similar is not None:
                        hit, similarity = similar
                        req.cache = "semantic"
                        span.set_attribute("llm.cache_similarity", similarity)
            headers["x-steward-cache"] = req.cache
            if hit is not None:
                if gspec is not None:
                    hit = self._guard_output(req, gspec, hit)
                self._finish(req, "ok")  # settles the reservation to zero: a cached answer costs nothing
                headers["x-steward-cost-usd"] = "0"
                _guard_header(headers, req)
                if stream:
                    return ChatResult(stream=self._replay(hit, include_usage), headers=headers)
                return ChatResult(response=hit, headers=headers)

            if stream and schema is None:
                head, rest, target = await self.router.open_stream(targets, body, req.attempts)
                req.target = target
                headers["x-steward-provider"] = target.ref
                _guard_header(headers, req)
                return ChatResult(stream=self._relay(req, head, rest, include_usage, ckey, vector, body, gspec), headers=headers)

            response = await self._complete(req, targets, body, schema)
            if gspec is not None:
                response = self._guard_output(req, gspec, response)
            assert req.target is not None
            headers["x-steward-provider"] = req.target.ref
            headers["x-steward-cost-usd"] = f"{req.micro_usd / MICRO:.6f}"
            _guard_header(headers, req)
            if use_cache:
                self._store(req, ckey, vector, response)
            self._finish(req, "ok")
            if stream:
                return ChatResult(stream=self._replay(response, include_usage), headers=headers)
            return ChatResult(response=response, headers=headers)
        except BaseException as exc:
            self._finish(req, "error", exc)
            raise

    def _guard_output(self, req: _Req, gspec: GuardrailsSpec, response: dict[str, Any]) -> dict[str, Any]:
        guarded, found = self.guards.check_output(gspec, response)
        req.verdicts.extend(found)
        raise_if_blocked(found, "answer")
        return guarded

    def _add_usage(self, req: _Req, target: Target, response: dict[str, Any], body: dict[str, Any]) -> None:
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
        req.micro_usd += self.cost_micro(target, pin, int(pout))

    async def _complete(self, req: _Req, targets: list[Target], body: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
        send = {**body, "stream": False}
        response, target = await self.router.chat(targets, send, req.attempts)
        req.target = target
        self._add_usage(req, target, response, send)
        if schema is None or _tool_calls(response):
            return response  # a tool call is not the final answer: the schema applies to the answer
        errors = validate_output(_content(response), schema)
        if not errors:
            return response
        req.span.add_event("structured_output.repair", {"errors": errors})
        repair = {**send, "messages": repair_messages(body["messages"], _content(response), errors)}
        response, target = await self.router.chat(targets, repair, req.attempts)
        req.target = target
        self._add_usage(req, target, response, repair)
        errors = validate_output(_content(response), schema)
        if errors:
            raise InvalidOutput(
                f"the model's answer does not match the requested JSON schema after one repair attempt: {'; '.join(errors)}",
                hint="simplify the schema, or pick a model that supports structured outputs",
                details={"errors": errors},
            )
        return response

    def _store(self, req: _Req, ckey: str | None, vector: Any, response: dict[str, Any]) -> None:
        if ckey is not None and self.exact is not None:
            self.exact.put(ckey, response)
        if self.semantic is not None and vector is not None:
            self.semantic.put(req.scope, vector, response)

    async def _replay(self, response: dict[str, Any], include_usage: bool) -> AsyncIterator[bytes]:
        for chunk in response_to_chunks(response):
            if chunk.get("usage") is not None and not chunk.get("choices"):
                if include_usage:
                    yield _sse(chunk)
                continue
            yield _sse(chunk)
        yield b"data: [DONE]\n\n"

    async def _relay(
        self,
        req: _Req,
        head: list[dict[str, Any]],
        rest: AsyncIterator[dict[str, Any]],
        include_usage: bool,
        ckey: str | None,
        vector: Any,
        body: dict[str, Any],
        gspec: GuardrailsSpec | None = None,
    ) -> AsyncIterator[bytes]:
        """Pass the upstream stream through, accumulating the answer for usage, cache, trace and the output guard."""
        parts: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        finish: str | None = None
        usage: dict[str, Any] | None = None
        meta: dict[str, Any] = {}
        status, error = "ok", None

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            for c in head:
                yield c
            async for c in rest:
                yield c

        try:
            async for chunk in chunks():
                if not meta:
                    meta = {"id": chunk.get("id"), "created": chunk.get("created"), "model": chunk.get("model")}
                if chunk.get("usage"):
                    usage = chunk["usage"]
                    if not chunk.get("choices"):
                        if include_usage:
                            yield _sse(chunk)
                        continue
                    if not include_usage:
                        chunk = {k: v for k, v in chunk.items() if k != "usage"}
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        parts.append(delta["content"])
                    for tc in delta.get("tool_calls") or []:
                        slot = calls.setdefault(
                            int(tc.get("index", 0)), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                        )
                        slot["id"] = tc.get("id") or slot["id"]
                        fn = tc.get("function") or {}
                        slot["function"]["name"] += fn.get("name") or ""
                        slot["function"]["arguments"] += fn.get("arguments") or ""
                    finish = choice.get("finish_reason") or finish
                yield _sse(chunk)
            yield b"data: [DONE]\n\n"
        except ProviderError as exc:
            # Tokens were already sent: no fallback possible, end the stream with an error event.
            status, error = "error", exc
            yield _sse({"error": {"message": exc.message, "type": "provider_error", "code": exc.code}})
        finally:
            close = getattr(rest, "aclose", None)
            if close is not None:
                try:
                    await close()  # the client may have gone: release the upstream connection now
                except Exception:
                    logger.debug("error closing the upstream stream", exc_info=True)
            message: dict[str, Any] = {"role": "assistant", "content": "".join(parts) if parts or not calls else None}
            if calls:
                message["tool_calls"] = [calls[i] for i in sorted(calls)]
            response = {
                "id": meta.get("id") or f"chatcmpl-{req.request_id}",
                "object": "chat.completion",
                "created": meta.get("created") or int(time.time()),
                "model": meta.get("model") or "",
                "choices": [{"index": 0, "message": message, "finish_reason": finish or "stop"}],
            }
            if usage:
                response["usage"] = usage
            assert req.target is not None
            self._add_usage(req, req.target, response, body)
            cacheable = True
            if gspec is not None and status == "ok" and isinstance(message.get("content"), str):
                try:
                    message["content"], found, cacheable = self.guards.scan_output(gspec, message["content"])
                    req.verdicts.extend(found)
                except Exception:  # the stream is over; a guard failure must not lose the usage record
                    logger.exception("output guard failed on streamed request %s", req.request_id)
                    cacheable = False
            if status == "ok" and finish is not None and req.cache != "off" and cacheable:
                response.setdefault(
                    "usage",
                    {
                        "prompt_tokens": req.prompt_tokens,
                        "completion_tokens": req.completion_tokens,
                        "total_tokens": req.prompt_tokens + req.completion_tokens,
                    },
                )
                self._store(req, ckey, vector, response)
            self._finish(req, status if finish is not None or status == "error" else "aborted", error)

    def _finish(self, req: _Req, status: str, error: BaseException | None = None) -> None:
        """Settle the budget, record usage, count metrics and end the span (exactly once per request)."""
        if req.reservation is not None:
            try:
                self.budget.settle(req.reservation, req.prompt_tokens + req.completion_tokens, req.micro_usd)
            except Exception:
                logger.exception("could not settle the budget of request %s", req.request_id)
        latency_ms = (time.perf_counter() - req.t0) * 1000
        target = req.target
        cost = req.micro_usd / MICRO
        is_limit = error is not None and isinstance(error, StewardError) and error.code.startswith("limit.")
        self.usage.record(
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
        _count_request(req.model, target.provider.name if target else "", status)
        _TOKENS_IN.inc(req.prompt_tokens)
        _TOKENS_OUT.inc(req.completion_tokens)
        if cost:
            COST.inc(cost)
        LATENCY.observe(latency_ms / 1000)
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
            },
        )
        if req.verdicts:
            span.set_attribute("guardrails.verdicts", verdict_header(req.verdicts))
            span.set_attribute("guardrails.findings", [f"{v.guard}:{v.detail}" for v in req.verdicts])
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
            span.set_attribute("llm.error_code", getattr(error, "code", type(error).__name__))
        span.end()

    # -- embeddings --------------------------------------------------------
    async def embeddings(self, body: dict[str, Any], key: GatewayKey, *, trace: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Answer an OpenAI embeddings request (budgets, usage and tracing as for chat; ``trace``: extra span attributes)."""
        model = body.get("model")
        raw = body.get("input")
        if not isinstance(model, str) or not model:
            raise ValidationFailed("'model' is required", details={"errors": [{"field": "model", "message": "required"}]})
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) for x in inputs):
            raise ValidationFailed(
                "'input' must be a string or a non-empty list of strings", details={"errors": [{"field": "input", "message": "invalid"}]}
            )
        targets = self.router.resolve(model)
        span = self.tracer.start_span("llm.embeddings", attributes={"llm.model": model, "llm.key": key.name, "llm.inputs": len(inputs)})
        if trace:
            set_attributes(span, trace)
        req = _Req(request_id(), key, model, "none", span, time.perf_counter(), cache="off")
        try:
            tokens = sum(count_text(t) for t in inputs)
            req.reservation = self.budget.reserve(key, tokens, max(self.cost_micro(t, tokens, 0) for t in targets))
            result, target = await self.router.run(targets, req.attempts, lambda t: t.provider.embed(inputs, t.model))
            req.target = target
            used = int((result.get("usage") or {}).get("prompt_tokens") or tokens)
            req.prompt_tokens = used
            req.micro_usd = self.cost_micro(target, used, 0)
            data: dict[str, Any] = result
            self._finish(req, "ok")
            return data
        except BaseException as exc:
            self._finish(req, "error", exc)
            raise

    # -- lifecycle ---------------------------------------------------------
    def flush(self) -> None:
        """Write buffered usage rows and spans now."""
        self.usage.flush()
        flush_traces(self.ws)

    async def aclose(self) -> None:
        """Close providers' connections, flush usage and spans.

        The counter and cache stores stay open: they belong to the workspace (or to whoever passed them in).
        """
        for p in self.providers.values():
            await p.aclose()
        self.usage.close()
        self.flush()
