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

from steward._extras import optional_import
from steward.errors import BackendUnavailable

__all__ = ["RedisOnlineStore"]

logger = logging.getLogger(__name__)

_CHUNK = 5000  # fields per HSET when loading a table: bounded request size


class RedisOnlineStore:
    """An :class:`~steward.backends.base.OnlineStore` on Redis.

    Args:
        url: ``redis://host:port/db``.
        prefix: Prepended to every key so projects (and tests) can share a server.
    """

    def __init__(self, url: str, *, prefix: str = "steward:features:") -> None:
        redis = optional_import("redis", extra="redis", needed_for="storage.online_store_url (a Redis online store)")

        self.url = url
        self.prefix = prefix
        self._redis: Any = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0)
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise BackendUnavailable(f"cannot reach Redis at {url}: {exc}", hint="start Redis or fix storage.online_store_url") from None

    def _key(self, namespace: str) -> str:
        return f"{self.prefix}{namespace}"

    def replace(self, namespace: str, items: Mapping[str, str]) -> int:
        """Load ``items`` into a temporary hash, then atomically rename it over the live table."""
        import redis

        live = self._key(namespace)
        try:
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
        except redis.RedisError as exc:
            raise BackendUnavailable(f"online store write to {self.url} failed: {exc}", hint="check that Redis is up") from None
        return len(items)

    def read(self, requests: Mapping[str, Sequence[str]]) -> dict[str, list[str | None]]:
        """One pipelined round trip: an ``HMGET`` per namespace."""
        import redis

        names = [n for n, keys in requests.items() if keys]
        out: dict[str, list[str | None]] = {n: [] for n, keys in requests.items() if not keys}
        if not names:
            return out
        pipe = self._redis.pipeline(transaction=False)
        for n in names:
            pipe.hmget(self._key(n), list(requests[n]))
        try:
            results = pipe.execute()
        except redis.RedisError as exc:
            raise BackendUnavailable(f"online store read from {self.url} failed: {exc}", hint="check that Redis is up") from None
        for n, vals in zip(names, results, strict=True):
            out[n] = [None if v is None else v.decode() for v in vals]
        return out

    def count(self, namespace: str) -> int:
        """Number of entities stored for a table."""
        return int(self._redis.hlen(self._key(namespace)))

    def drop(self, namespace: str) -> None:
        """Delete a whole table (tests and re-definitions)."""
        self._redis.delete(self._key(namespace))

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()
