"""Redis Streams consumer groups: the scale-out :class:`~steward.backends.base.StreamBackend`.

XREADGROUP delivers, XACK acknowledges, XAUTOCLAIM hands a dead consumer's
unacknowledged messages to a live one. Delivery is at-least-once; the caller
makes landing idempotent (keyed on the message id) and acks only after its
own commit.
"""

from __future__ import annotations

import logging
from typing import Any

from steward._extras import optional_import
from steward.backends.base import StreamEntry
from steward.errors import BackendUnavailable

__all__ = ["RedisStreamBackend"]

logger = logging.getLogger(__name__)


def _entries(raw: Any) -> list[StreamEntry]:
    out: list[StreamEntry] = []
    for item in raw or []:
        msg_id, fields = item[0], item[1]
        if fields is None:  # deleted from the stream (XDEL / trimmed) while pending
            continue
        out.append((str(msg_id), {str(k): str(v) for k, v in fields.items()}))
    return out


class RedisStreamBackend:
    """A :class:`~steward.backends.base.StreamBackend` on Redis Streams.

    Args:
        url: ``redis://host:port/db``.
    """

    def __init__(self, url: str) -> None:
        redis = optional_import("redis", extra="redis", needed_for="storage.stream_url (Redis Streams)")

        self.url = url
        self._redis: Any = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise BackendUnavailable(f"cannot reach Redis at {url}: {exc}", hint="start Redis or fix storage.stream_url") from None

    def ensure_group(self, stream: str, group: str) -> None:
        """Create the consumer group from the start of the stream (idempotent)."""
        import redis

        try:
            self._redis.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def add(self, stream: str, fields: dict[str, str]) -> str:
        """XADD a message."""
        return str(self._redis.xadd(stream, fields))

    def read(self, stream: str, group: str, consumer: str, *, count: int = 100, pending: bool = False) -> list[StreamEntry]:
        """XREADGROUP: new messages (``>``), or this consumer's own pending ones (``0``)."""
        resp = self._redis.xreadgroup(group, consumer, {stream: "0" if pending else ">"}, count=count)
        if not resp:
            return []
        # RESP2 (redis-py's default protocol): [[stream, [(id, fields), ...]]]
        return _entries(resp[0][1])

    def claim(self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 100) -> list[StreamEntry]:
        """XAUTOCLAIM messages idle for at least ``min_idle_ms``, scanning the whole pending list."""
        out: list[StreamEntry] = []
        start = "0-0"
        while len(out) < count:
            resp = self._redis.xautoclaim(stream, group, consumer, min_idle_ms, start_id=start, count=count - len(out))
            start, items = str(resp[0]), resp[1]
            out += _entries(items)
            if start == "0-0":
                break
        return out

    def ack(self, stream: str, group: str, ids: list[str]) -> int:
        """XACK."""
        if not ids:
            return 0
        return int(self._redis.xack(stream, group, *ids))

    def pending_count(self, stream: str, group: str) -> int:
        """XPENDING summary count."""
        info = self._redis.xpending(stream, group)
        return int(info["pending"] if isinstance(info, dict) else info[0])

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()
