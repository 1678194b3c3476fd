"""Budgets (tokens and money) and rate limits (requests and tokens per minute), per key and per team, enforced atomically.

A request reserves an estimate up front (prompt tokens + its max completion
tokens, priced at the most expensive step of its fallback chain) in one atomic
:meth:`~steward.backends.base.CounterStore.reserve`: either every counter stays
within its cap and all are incremented, or the request is refused before it
reaches a provider. After the answer, :meth:`BudgetEnforcer.settle` replaces
the estimate by the actual amount. Money is counted in micro-dollars (integers).

Counters: ``rl:<key>:req|tok:<minute>`` (key rate limits), ``rl:team:<team>:req|tok:<minute>``
(team rate limits, shared by every key of the team), ``bud:key|team:<name>:tok|usd:<period>``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from steward.backends.base import CounterSpec, CounterStore
from steward.llm.gateway._errors import BudgetExceeded, RateLimited
from steward.spec import BudgetSpec, GatewayKeySpec, GatewaySpec, RateLimitSpec

__all__ = ["MICRO", "BudgetEnforcer", "GatewayKey", "Reservation"]

logger = logging.getLogger(__name__)

MICRO = 1_000_000


@dataclass(frozen=True)
class GatewayKey:
    """An authenticated gateway key (never holds the secret)."""

    name: str
    spec: GatewayKeySpec

    @property
    def team(self) -> str | None:
        """The key's team."""
        return self.spec.team


@dataclass
class Reservation:
    """What a request reserved; settled or released once it is done."""

    tokens: int = 0
    micro_usd: int = 0
    token_keys: list[tuple[str, float]] = field(default_factory=list)
    usd_keys: list[tuple[str, float]] = field(default_factory=list)
    settled: bool = False


# What a counter measures, to explain a refusal: (kind, scope, name, unit, period label).
_Why = tuple[str, str, str, str, str]


class BudgetEnforcer:
    """Reserve and settle budgets and rate limits against a :class:`CounterStore`.

    Args:
        spec: The gateway spec (keys, teams).
        store: The atomic counters (SQLite or Redis).
        clock: Wall-clock seconds, injected for tests.
    """

    def __init__(self, spec: GatewaySpec, store: CounterStore, clock: Callable[[], float] = time.time) -> None:
        self.spec = spec
        self.store = store
        self.clock = clock
        self._periods: dict[tuple[str, int], tuple[str, float]] = {}

    def _rate_limits(self, key: GatewayKey) -> list[tuple[str, str, str, RateLimitSpec]]:
        # (scope, name, counter prefix, limit): the key's own, then its team's (shared by all the team's keys).
        out: list[tuple[str, str, str, RateLimitSpec]] = []
        if key.spec.rate_limit is not None:
            out.append(("key", key.name, f"rl:{key.name}", key.spec.rate_limit))
        team = self.spec.teams.get(key.team) if key.team else None
        if team is not None and team.rate_limit is not None:
            out.append(("team", key.team or "", f"rl:team:{key.team}", team.rate_limit))
        return out

    def _budgets(self, key: GatewayKey) -> list[tuple[str, str, BudgetSpec]]:
        out: list[tuple[str, str, BudgetSpec]] = []
        if key.spec.budget is not None:
            out.append(("key", key.name, key.spec.budget))
        team = self.spec.teams.get(key.team) if key.team else None
        if team is not None and team.budget is not None:
            out.append(("team", key.team or "", team.budget))
        return out

    def _period(self, budget: BudgetSpec, now: float) -> tuple[str, float]:
        # The label only changes with the UTC day: format it once per day, not on every request.
        cache_key = (budget.period, int(now // 86400))
        found = self._periods.get(cache_key)
        if found is not None:
            return found
        dt = datetime.fromtimestamp(now, UTC)
        found = (dt.strftime("%Y-%m-%d"), 2 * 86400.0) if budget.period == "day" else (dt.strftime("%Y-%m"), 33 * 86400.0)
        if len(self._periods) > 64:
            self._periods.clear()
        self._periods[cache_key] = found
        return found

    def reserve(self, key: GatewayKey, tokens: int, micro_usd: int) -> Reservation:
        """Reserve ``tokens`` and ``micro_usd`` for one request, or refuse it.

        Raises:
            RateLimited: a key or team per-minute limit would be exceeded (HTTP 429).
            BudgetExceeded: a key or team budget would be exceeded (HTTP 402).
            BackendUnavailable: the counter store (Redis) does not answer (HTTP 503 with Retry-After); its
                client fails fast (see :mod:`steward.backends.redis_conn`), so a request never hangs on it.
        """
        now = self.clock()
        res = Reservation(tokens=tokens, micro_usd=micro_usd)
        counters: list[CounterSpec] = []
        why: list[_Why] = []
        minute = int(now // 60)
        for scope, name, prefix, rl in self._rate_limits(key):
            if rl.requests_per_minute is not None:
                counters.append((f"{prefix}:req:{minute}", 1, rl.requests_per_minute, 120.0))
                why.append(("rate", scope, name, "requests", "per minute"))
            if rl.tokens_per_minute is not None:
                k = f"{prefix}:tok:{minute}"
                counters.append((k, tokens, rl.tokens_per_minute, 120.0))
                why.append(("rate", scope, name, "tokens", "per minute"))
                res.token_keys.append((k, 120.0))
        for scope, name, budget in self._budgets(key):
            period, ttl = self._period(budget, now)
            if budget.tokens is not None:
                k = f"bud:{scope}:{name}:tok:{period}"
                counters.append((k, tokens, budget.tokens, ttl))
                why.append(("budget", scope, name, "tokens", f"per {budget.period} ({period})"))
                res.token_keys.append((k, ttl))
            if budget.usd is not None:
                k = f"bud:{scope}:{name}:usd:{period}"
                counters.append((k, micro_usd, round(budget.usd * MICRO), ttl))
                why.append(("budget", scope, name, "usd", f"per {budget.period} ({period})"))
                res.usd_keys.append((k, ttl))
        if not counters:
            return res
        failed = self.store.reserve(counters)
        if failed < 0:
            return res
        kind, scope, name, unit, period_label = why[failed]
        ckey, amount, limit, _ttl = counters[failed]
        used = self.store.get(ckey)
        details: dict[str, Any] = {"scope": scope, "name": name, "unit": unit}
        if unit == "usd":
            # Counters hold integer micro-dollars (exact sums); people read dollars to the micro-dollar.
            cap, have, asked = (f"${(v or 0) / MICRO:.6f}" for v in (limit, used, amount))
            for label, v in (("limit", limit or 0), ("used", used), ("requested", amount)):
                details[f"{label}_usd"] = v / MICRO
                details[f"{label}_micro_usd"] = v
        else:
            cap, have, asked = f"{limit} {unit}", f"{used}", f"{amount}"
            details.update({"limit": limit, "used": used, "requested": amount})
        message = f"{scope} '{name}': {cap} {period_label} would be exceeded (used {have}, this request needs {asked})"
        if kind == "rate":
            retry = 60 - (now % 60)
            raise RateLimited(message, hint=f"retry in {retry:.0f}s", details={**details, "retry_after_s": round(retry, 1)})
        raise BudgetExceeded(
            message, hint="raise the budget in steward.yaml, lower max_tokens, or wait for the next period", details=details
        )

    def settle(self, res: Reservation, tokens: int, micro_usd: int) -> None:
        """Replace the reserved estimate by the actual amounts (a release when both are 0)."""
        if res.settled:
            return
        res.settled = True
        dt, dm = tokens - res.tokens, micro_usd - res.micro_usd
        deltas = [(k, dt, ttl) for k, ttl in res.token_keys if dt] + [(k, dm, ttl) for k, ttl in res.usd_keys if dm]
        if deltas:
            self.store.adjust(deltas)

    def release(self, res: Reservation) -> None:
        """Give a failed request's reservation back (its request count stays)."""
        self.settle(res, 0, 0)
