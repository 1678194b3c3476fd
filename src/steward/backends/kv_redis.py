"""Atomic counters and a TTL cache on Redis: budgets and rate limits shared by every replica.

``reserve`` is one Lua script, so the check of every limit and the increments
happen as one atomic step on the server: replicas reserving against one budget
never overspend together.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from steward.backends.base import CounterSpec
from steward.backends.redis_conn import guard, open_redis

__all__ = ["RedisKV"]

logger = logging.getLogger(__name__)

# KEYS: counters; ARGV: amount, limit (-1 = no cap), ttl_ms for each key in order.
_RESERVE = """
for i = 1, #KEYS do
  local limit = tonumber(ARGV[3 * i - 1])
  if limit >= 0 then
    local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
    if cur + tonumber(ARGV[3 * i - 2]) > limit then
      return i - 1
    end
  end
end
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[3 * i - 2])
  if redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[3 * i])
  end
end
return -1
"""

# KEYS: counters; ARGV: delta, ttl_ms for each key in order.
_ADJUST = """
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[2 * i - 1])
  if redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
  end
end
return 0
"""


class RedisKV:
    """A :class:`~steward.backends.base.CounterStore` and :class:`~steward.backends.base.CacheStore` on Redis.

    Args:
        url: ``redis://host:port/db``.
        prefix: Prepended to every key (the project name by default), so projects can share a server.


    Raises:
        BackendUnavailable: from the constructor and every call, when Redis does not answer (see
            :mod:`steward.backends.redis_conn` for the timeouts and the retry on a dropped connection).
    """

    _NAME = "counters and cache"

    def __init__(self, url: str, *, prefix: str = "steward:") -> None:
        self.url = url
        self.prefix = prefix
        self._redis: Any = open_redis(url, name=self._NAME, setting="storage.cache_url")
        self._reserve = self._redis.register_script(_RESERVE)
        self._adjust = self._redis.register_script(_ADJUST)

    def reserve(self, counters: Sequence[CounterSpec]) -> int:
        """Atomically increment every counter if all stay within limits; else return the first failing index."""
        keys = [self.prefix + c[0] for c in counters]
        args: list[int] = []
        for _key, amount, limit, ttl in counters:
            args += [int(amount), -1 if limit is None else int(limit), max(1, int(ttl * 1000))]
        with guard(self._NAME, self.url):
            return int(self._reserve(keys=keys, args=args))

    def adjust(self, counters: Sequence[tuple[str, int, float]]) -> None:
        """Add deltas without a limit check (settling a reservation)."""
        if not counters:
            return
        keys = [self.prefix + c[0] for c in counters]
        args: list[int] = []
        for _key, delta, ttl in counters:
            args += [int(delta), max(1, int(ttl * 1000))]
        with guard(self._NAME, self.url):
            self._adjust(keys=keys, args=args)

    def get(self, key: str) -> int:
        """Current value of a counter (0 when absent or expired)."""
        with guard(self._NAME, self.url):
            value = self._redis.get(self.prefix + key)
        return int(value) if value is not None else 0

    def cache_get(self, key: str) -> bytes | None:
        """The cached value, or None."""
        with guard(self._NAME, self.url):
            value = self._redis.get(self.prefix + "cache:" + key)
        return bytes(value) if value is not None else None

    def cache_set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store ``value`` for ``ttl_s`` seconds."""
        with guard(self._NAME, self.url):
            self._redis.set(self.prefix + "cache:" + key, value, px=max(1, int(ttl_s * 1000)))

    def ping(self) -> None:
        """One round trip; raise :class:`~steward.errors.BackendUnavailable` when Redis does not answer."""
        with guard(self._NAME, self.url):
            self._redis.ping()

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()
