"""Routing: alias → ordered fallback chain, retries with backoff and jitter, and a circuit breaker per provider."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from steward.llm.gateway._errors import ProviderError, ProvidersRateLimited, UnknownModel
from steward.llm.gateway._providers import Provider

__all__ = ["CircuitBreaker", "Router", "Target"]

logger = logging.getLogger(__name__)


@dataclass
class _State:
    failures: int = 0
    open_until: float = 0.0
    trial: bool = False


class CircuitBreaker:
    """Per-provider breaker: ``failures`` consecutive failures open it for ``cooldown_s``.

    After the cooldown one trial request is let through (half-open): success
    closes the circuit, failure opens it again for another cooldown.
    """

    def __init__(self, failures: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._states: dict[str, _State] = {}

    def state(self, name: str) -> str:
        """``closed``, ``open`` or ``half_open``."""
        st = self._states.get(name)
        if st is None or st.failures < self.failures:
            return "closed"
        return "open" if self.clock() < st.open_until else "half_open"

    def allow(self, name: str) -> bool:
        """Whether a request may go to ``name`` now."""
        st = self._states.get(name)
        if st is None or st.failures < self.failures:
            return True
        if self.clock() < st.open_until:
            return False
        if st.trial:  # a trial is already in flight
            return False
        st.trial = True
        return True

    def success(self, name: str) -> None:
        """A request to ``name`` succeeded: close its circuit."""
        st = self._states.get(name)
        if st is not None:
            st.failures, st.trial, st.open_until = 0, False, 0.0

    def abandon(self, name: str) -> None:
        """A request to ``name`` ended without telling anything about its health: free a half-open trial slot."""
        st = self._states.get(name)
        if st is not None:
            st.trial = False

    def failure(self, name: str) -> None:
        """A request to ``name`` failed."""
        st = self._states.setdefault(name, _State())
        st.failures += 1
        st.trial = False
        if st.failures >= self.failures:
            st.open_until = self.clock() + self.cooldown_s
            logger.warning("circuit for provider %s opened for %.1fs after %d failures", name, self.cooldown_s, st.failures)


@dataclass(frozen=True)
class Target:
    """One step of a fallback chain: a provider and the pinned model it serves."""

    provider: Provider
    model: str

    @property
    def ref(self) -> str:
        """``provider:model``."""
        return f"{self.provider.name}:{self.model}"


@dataclass
class Attempts:
    """What happened on the way to an answer (for traces and error details)."""

    tried: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _has_token(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or choice.get("finish_reason"):
            return True
    return False


class Router:
    """Resolve a model name to targets and call them in order until one answers.

    Args:
        providers: Provider name → provider.
        aliases: Alias → ``["provider:model", ...]``.
        breaker: The circuit breaker.
        backoff_s: Base delay of the exponential backoff (doubled per retry, full jitter).
        max_backoff_s: Cap of one delay.
        sleep: Injected for tests.
    """

    def __init__(
        self,
        providers: dict[str, Provider],
        aliases: dict[str, list[str]],
        breaker: CircuitBreaker,
        *,
        backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.providers = providers
        self.aliases = aliases
        self.breaker = breaker
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        self.rng = rng or random.Random()
        self._resolved: dict[str, list[Target]] = {}

    def resolve(self, model: str) -> list[Target]:
        """The fallback chain for ``model`` (an alias or ``provider:model``).

        Raises:
            UnknownModel: neither an alias nor a configured provider's model.
        """
        cached = self._resolved.get(model)
        if cached is not None:
            return cached
        refs = self.aliases.get(model) or [model]
        targets = []
        for ref in refs:
            prov, sep, name = ref.partition(":")
            if not sep or prov not in self.providers:
                raise UnknownModel(
                    f"unknown model {model!r}" + (f" (alias step {ref!r})" if ref != model else ""),
                    hint=f"use an alias ({', '.join(sorted(self.aliases)) or 'none declared'}) or PROVIDER:MODEL with a provider in llm.gateway.providers",
                )
            targets.append(Target(self.providers[prov], name))
        self._resolved[model] = targets
        return targets

    def _delay(self, attempt: int, err: ProviderError) -> float:
        delay = min(self.max_backoff_s, self.backoff_s * (2**attempt))
        if err.retry_after is not None:
            delay = min(self.max_backoff_s, max(delay, err.retry_after))
        return self.rng.uniform(0, delay)  # full jitter: replicas don't retry in lockstep

    def _plan(self, targets: list[Target]) -> list[tuple[Target, int]]:
        return [(t, t.provider.max_retries) for t in targets]

    async def run(self, targets: list[Target], attempts: Attempts, call: Callable[[Target], Awaitable[Any]]) -> tuple[Any, Target]:
        """Call ``call(target)`` along the chain with retries, backoff, breaker and fallbacks; return the first result.

        Raises:
            ProviderError: every target failed (``llm.all_providers_failed``), details list each attempt.
            UpstreamRejected: a provider rejected the request itself (not retried).
        """
        last: ProviderError | None = None
        failures: list[ProviderError] = []
        for position, (target, retries) in enumerate(self._plan(targets)):
            is_last = position == len(targets) - 1
            for attempt in range(retries + 1):
                name = target.provider.name
                if not self.breaker.allow(name):
                    attempts.errors.append(f"{target.ref}: circuit open")
                    break
                attempts.tried.append(target.ref)
                try:
                    result = await call(target)
                except ProviderError as exc:
                    if exc.code == "llm.pool_exhausted":  # our own overload says nothing about the provider's health
                        self.breaker.abandon(name)
                    else:
                        self.breaker.failure(name)
                    attempts.errors.append(f"{target.ref}: {exc.message}")
                    last = exc
                    failures.append(exc)
                    # A rate-limited provider won't recover in milliseconds: move on unless it is the last one.
                    if not exc.retryable or (exc.status == 429 and not is_last) or attempt == retries:
                        break
                    await self.sleep(self._delay(attempt, exc))
                    continue
                self.breaker.success(name)
                return result, target
        if failures and len(failures) == len(attempts.errors) and all(f.status == 429 for f in failures):
            raise _all_rate_limited(attempts, failures)
        raise ProviderError(
            f"every provider failed: {'; '.join(attempts.errors) or 'no provider available'}",
            code="llm.all_providers_failed",
            hint="check the providers' health; the circuit breaker cools failing providers down",
            details={"attempts": attempts.errors, "upstream_status": last.status if last else None},
        )

    async def chat(self, targets: list[Target], body: dict[str, Any], attempts: Attempts | None = None) -> tuple[dict[str, Any], Target]:
        """The first successful non-streamed answer along the chain."""
        result, target = await self.run(targets, attempts or Attempts(), lambda t: t.provider.chat(body, t.model))
        return result, target

    async def open_stream(
        self, targets: list[Target], body: dict[str, Any], attempts: Attempts | None = None
    ) -> tuple[list[dict[str, Any]], AsyncIterator[dict[str, Any]], Target]:
        """Open a stream along the chain; a stream that fails before its first token falls back to the next target.

        Returns:
            The chunks read so far (up to and including the first token), the rest of the stream, and the target.
        """

        async def open_one(target: Target) -> tuple[list[dict[str, Any]], AsyncIterator[dict[str, Any]]]:
            gen = target.provider.stream(body, target.model)
            head: list[dict[str, Any]] = []
            try:
                async for chunk in gen:
                    head.append(chunk)
                    if _has_token(chunk):
                        break
            except ProviderError:
                await _aclose(gen)
                raise
            return head, gen

        (head, rest), target = await self.run(targets, attempts or Attempts(), open_one)
        return head, rest, target


async def _aclose(gen: AsyncIterator[Any]) -> None:
    close = getattr(gen, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:
            logger.debug("error closing a failed stream", exc_info=True)


def _all_rate_limited(attempts: Attempts, failures: list[ProviderError]) -> ProvidersRateLimited:
    """The error when every attempt was a 429: the client should wait, not report an outage.

    ``Retry-After`` is the *smallest* wait any provider asked for: the chain falls back in order, so the
    request can succeed as soon as the first provider accepts again (a later retry lands on it).
    """
    waits = [f.retry_after for f in failures if f.retry_after is not None]
    details: dict[str, Any] = {"attempts": attempts.errors, "upstream_status": 429}
    if waits:
        details["retry_after_s"] = min(waits)
    return ProvidersRateLimited(
        f"every provider is rate-limited: {'; '.join(attempts.errors)}",
        status=429,
        hint="retry after the Retry-After delay, or add a fallback provider to the alias",
        details=details,
    )
