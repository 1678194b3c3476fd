"""Redis Streams consumer groups: the scale-out :class:`~steward.backends.base.StreamBackend`.

XREADGROUP delivers, XACK acknowledges, XAUTOCLAIM hands a dead consumer's
unacknowledged messages to a live one. Delivery is at-least-once; the caller
makes landing idempotent (keyed on the message id) and acks only after its
own commit.
"""

from __future__ import annotations

import logging
from typing import Any

from steward.backends.base import StreamEntry
from steward.backends.redis_conn import guard, open_redis

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

    Raises:
        BackendUnavailable: from the constructor and every call, when Redis does not answer (see
            :mod:`steward.backends.redis_conn` for the timeouts and the retry on a dropped connection).
    """

    _NAME = "stream"

    def __init__(self, url: str) -> None:
        self.url = url
        self._redis: Any = open_redis(url, name=self._NAME, setting="storage.stream_url", decode_responses=True)

    def ping(self) -> None:
        """One round trip; raise :class:`~steward.errors.BackendUnavailable` when Redis does not answer."""
        with guard(self._NAME, self.url):
            self._redis.ping()

    def ensure_group(self, stream: str, group: str) -> None:
        """Create the consumer group from the start of the stream (idempotent)."""
        import redis

        try:
            with guard(self._NAME, self.url):
                self._redis.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def add(self, stream: str, fields: dict[str, str]) -> str:
        """XADD a message."""
        with guard(self._NAME, self.url):
            return str(self._redis.xadd(stream, fields))

    def read(self, stream: str, group: str, consumer: str, *, count: int = 100, pending: bool = False) -> list[StreamEntry]:
        """XREADGROUP: new messages (``>``), or this consumer's own pending ones (``0``)."""
        with guard(self._NAME, self.url):
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
            with guard(self._NAME, self.url):
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
        with guard(self._NAME, self.url):
            return int(self._redis.xack(stream, group, *ids))

    def pending_count(self, stream: str, group: str) -> int:
        """XPENDING summary count."""
        with guard(self._NAME, self.url):
            info = self._redis.xpending(stream, group)
        return int(info["pending"] if isinstance(info, dict) else info[0])

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()
