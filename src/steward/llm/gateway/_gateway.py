"""The gateway: authenticate, resolve, reserve, guard, cache, route, validate, guard, settle, record, trace."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from steward._primitives import request_id
from steward.errors import AuthError, ValidationFailed
from steward.governance.access import KeyRing, bearer_token
from steward.governance.audit import record_if_changed
from steward.llm.gateway._budget import MICRO, BudgetEnforcer, GatewayKey
from steward.llm.gateway._cache import ExactCache, SemanticCache, cache_key, cache_scope, default_embed, request_text
from steward.llm.gateway._embedfmt import embedding_options, shape_embeddings
from steward.llm.gateway._errors import InvalidOutput
from steward.llm.gateway._guard import GatewayGuards, raise_if_blocked
from steward.llm.gateway._providers import EmbedFn, LocalProvider, Provider, build_provider
from steward.llm.gateway._request import (
    METRICS,
    ChatResult,
    Req,
    add_usage,
    check_contents,
    finish_request,
    guard_header,
    has_tool_calls,
    message_content,
)
from steward.llm.gateway._router import CircuitBreaker, Router, Target
from steward.llm.gateway._stream import relay, replay
from steward.llm.gateway._structured import json_schema_of, repair_messages, validate_output
from steward.llm.gateway._tokens import count_messages, count_text
from steward.llm.gateway._usage import UsageRecorder
from steward.llm.guardrails import injection
from steward.llm.prompts import PromptRegistry, content_version
from steward.observability.gcfreeze import freeze_long_lived
from steward.observability.tracing import flush as flush_traces
from steward.observability.tracing import get_tracer, set_attributes

if TYPE_CHECKING:
    from steward.backends.base import CacheStore, CounterStore
    from steward.spec import GuardrailsSpec
    from steward.workspace import Workspace

__all__ = ["METRICS", "ChatResult", "Gateway"]

logger = logging.getLogger(__name__)


def _warm_injection_scorer() -> None:
    injection.get_scorer()
    freeze_long_lived()  # its term tables live as long as the process: keep them out of every GC pass


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
        check_contents(messages)
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
        req = Req(request_id(), key, model, prompt_version, span, t0)
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
                guard_header(headers, req)
                if stream:
                    return ChatResult(stream=replay(hit, include_usage), headers=headers)
                return ChatResult(response=hit, headers=headers)

            if stream and schema is None:
                head, rest, target = await self.router.open_stream(targets, body, req.attempts)
                req.target = target
                headers["x-steward-provider"] = target.ref
                guard_header(headers, req)
                return ChatResult(stream=relay(self, req, head, rest, include_usage, ckey, vector, body, gspec), headers=headers)

            response = await self._complete(req, targets, body, schema)
            if gspec is not None:
                response = self._guard_output(req, gspec, response)
            assert req.target is not None
            headers["x-steward-provider"] = req.target.ref
            headers["x-steward-cost-usd"] = f"{req.micro_usd / MICRO:.6f}"
            guard_header(headers, req)
            if use_cache:
                self._store(req, ckey, vector, response)
            self._finish(req, "ok")
            if stream:
                return ChatResult(stream=replay(response, include_usage), headers=headers)
            return ChatResult(response=response, headers=headers)
        except BaseException as exc:
            self._finish(req, "error", exc)
            raise

    def _guard_output(self, req: Req, gspec: GuardrailsSpec, response: dict[str, Any]) -> dict[str, Any]:
        guarded, found = self.guards.check_output(gspec, response)
        req.verdicts.extend(found)
        raise_if_blocked(found, "answer")
        return guarded

    async def _complete(self, req: Req, targets: list[Target], body: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
        send = {**body, "stream": False}
        response, target = await self.router.chat(targets, send, req.attempts)
        req.target = target
        self._add_usage(req, target, response, send)
        if schema is None or has_tool_calls(response):
            return response  # a tool call is not the final answer: the schema applies to the answer
        errors = validate_output(message_content(response), schema)
        if not errors:
            return response
        req.span.add_event("structured_output.repair", {"errors": errors})
        repair = {**send, "messages": repair_messages(body["messages"], message_content(response), errors)}
        response, target = await self.router.chat(targets, repair, req.attempts)
        req.target = target
        self._add_usage(req, target, response, repair)
        errors = validate_output(message_content(response), schema)
        if errors:
            raise InvalidOutput(
                f"the model's answer does not match the requested JSON schema after one repair attempt: {'; '.join(errors)}",
                hint="simplify the schema, or pick a model that supports structured outputs",
                details={"errors": errors},
            )
        return response

    def _store(self, req: Req, ckey: str | None, vector: Any, response: dict[str, Any]) -> None:
        if ckey is not None and self.exact is not None:
            self.exact.put(ckey, response)
        if self.semantic is not None and vector is not None:
            self.semantic.put(req.scope, vector, response)

    def _add_usage(self, req: Req, target: Target, response: dict[str, Any], body: dict[str, Any]) -> None:
        add_usage(req, target, response, body, self.cost_micro)

    def _finish(self, req: Req, status: str, error: BaseException | None = None) -> None:
        """Settle the budget, record usage, count metrics and end the span (exactly once per request)."""
        finish_request(req, status, error, budget=self.budget, usage=self.usage)

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
        options = embedding_options(body)  # before any provider is called or budget reserved
        targets = self.router.resolve(model)
        span = self.tracer.start_span("llm.embeddings", attributes={"llm.model": model, "llm.key": key.name, "llm.inputs": len(inputs)})
        if trace:
            set_attributes(span, trace)
        req = Req(request_id(), key, model, "none", span, time.perf_counter(), cache="off")
        try:
            tokens = sum(count_text(t) for t in inputs)
            req.reservation = self.budget.reserve(key, tokens, max(self.cost_micro(t, tokens, 0) for t in targets))
            result, target = await self.router.run(targets, req.attempts, lambda t: t.provider.embed(inputs, t.model))
            req.target = target
            used = int((result.get("usage") or {}).get("prompt_tokens") or tokens)
            req.prompt_tokens = used
            req.micro_usd = self.cost_micro(target, used, 0)
            data = shape_embeddings(result, options)
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
