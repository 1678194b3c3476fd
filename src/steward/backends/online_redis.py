"""The online feature store on Redis: one hash per feature table, shared by every serving replica.

A table is replaced by writing a temporary hash and ``RENAME``-ing it over the
live one, so readers see either the old table or the new one, never a mix.
A read of any number of entities across tables is one pipelined round trip
(one ``HMGET`` per table).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from steward.backends.redis_conn import guard, open_redis

__all__ = ["RedisOnlineStore"]

logger = logging.getLogger(__name__)

_CHUNK = 5000  # fields per HSET when loading a table: bounded request size


class RedisOnlineStore:
    """An :class:`~steward.backends.base.OnlineStore` on Redis.

    Args:
        url: ``redis://host:port/db``.
        prefix: Prepended to every key so projects (and tests) can share a server.

    Raises:
        BackendUnavailable: from the constructor and every call, when Redis does not answer (see
            :mod:`steward.backends.redis_conn` for the timeouts and the retry on a dropped connection).
    """

    _NAME = "online store"

    def __init__(self, url: str, *, prefix: str = "steward:features:") -> None:
        self.url = url
        self.prefix = prefix
        self._redis: Any = open_redis(url, name=self._NAME, setting="storage.online_store_url")

    def _key(self, namespace: str) -> str:
        return f"{self.prefix}{namespace}"

    def replace(self, namespace: str, items: Mapping[str, str]) -> int:
        """Load ``items`` into a temporary hash, then atomically rename it over the live table."""
        live = self._key(namespace)
        with guard(self._NAME, self.url, hint="check that Redis is up, then load the table again"):
            if not items:
                self._redis.delete(live)
                return 0
            tmp = f"{live}:loading:{uuid.uuid4().hex}"
            pipe = self._redis.pipeline(transaction=False)
            batch: dict[str, str] = {}
            for k, v in items.items():
                batch[k] = v
                if len(batch) >= _CHUNK:
                    pipe.hset(tmp, mapping=batch)
                    batch = {}
            if batch:
                pipe.hset(tmp, mapping=batch)
            # a crashed load must not leave a stray temporary hash behind forever
            pipe.expire(tmp, 3600)
            pipe.execute()
            pipe = self._redis.pipeline(transaction=True)
            pipe.rename(tmp, live)
            pipe.persist(live)
            pipe.execute()
        return len(items)

    def read(self, requests: Mapping[str, Sequence[str]]) -> dict[str, list[str | None]]:
        """One pipelined round trip: an ``HMGET`` per namespace."""
        names = [n for n, keys in requests.items() if keys]
        out: dict[str, list[str | None]] = {n: [] for n, keys in requests.items() if not keys}
        if not names:
            return out
        pipe = self._redis.pipeline(transaction=False)
        for n in names:
            pipe.hmget(self._key(n), list(requests[n]))
        with guard(self._NAME, self.url):
            results = pipe.execute()
        for n, vals in zip(names, results, strict=True):
            out[n] = [None if v is None else v.decode() for v in vals]
        return out

    def count(self, namespace: str) -> int:
        """Number of entities stored for a table."""
        with guard(self._NAME, self.url):
            return int(self._redis.hlen(self._key(namespace)))

    def drop(self, namespace: str) -> None:
        """Delete a whole table (tests and re-definitions)."""
        with guard(self._NAME, self.url):
            self._redis.delete(self._key(namespace))

    def ping(self) -> None:
        """One round trip; raise :class:`~steward.errors.BackendUnavailable` when Redis does not answer."""
        with guard(self._NAME, self.url):
            self._redis.ping()

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()
