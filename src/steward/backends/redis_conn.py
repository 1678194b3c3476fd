"""One way to open a Redis client: short timeouts, a retry on a dropped connection, errors mapped to 503.

redis-py's defaults (no socket timeout, several retries including on timeouts) make a
black-holed server hang a request for seconds. Steward's clients fail fast instead:
connecting waits at most :data:`CONNECT_TIMEOUT_S`, a reply at most :data:`SOCKET_TIMEOUT_S`,
and only a *dropped* connection (a restart) is retried, once, on a fresh connection, which
is what makes a Redis restart invisible to callers. A timeout is not retried (it would only
double the wait). A pooled connection idle for :data:`HEALTH_CHECK_INTERVAL_S` is pinged
before use. Each value can be changed per URL with redis-py's query parameters, e.g.
``redis://host:6379/0?socket_timeout=2&socket_connect_timeout=1&health_check_interval=5``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from steward._extras import optional_import
from steward.backends.health import unavailable

__all__ = ["CONNECT_TIMEOUT_S", "HEALTH_CHECK_INTERVAL_S", "SOCKET_TIMEOUT_S", "guard", "open_redis"]

CONNECT_TIMEOUT_S = 0.25
"""Seconds to wait for a TCP connection to Redis (a local or same-zone server answers in well under 10 ms)."""

SOCKET_TIMEOUT_S = 0.5
"""Seconds to wait for a reply to one command."""

HEALTH_CHECK_INTERVAL_S = 10
"""A pooled connection idle this long is pinged before it is used again."""


def open_redis(url: str, *, name: str, setting: str, decode_responses: bool = False) -> Any:
    """A ``redis.Redis`` for ``url`` that fails fast and survives a server restart; pinged once.

    Args:
        url: ``redis://host:port/db`` (query parameters override the defaults above).
        name: What the client is for, in messages ("online store", ...).
        setting: The steward.yaml key holding the URL, named in the fix.
        decode_responses: Return ``str`` instead of ``bytes``.

    Raises:
        BackendUnavailable: the server does not answer the first PING.
    """
    redis = optional_import("redis", extra="redis", needed_for=f"{setting} ({name} on Redis)")
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 1, supported_errors=(redis.ConnectionError,)),
        decode_responses=decode_responses,
    )
    with guard(name, url, hint=f"start Redis or fix {setting}"):
        client.ping()
    return client


@contextlib.contextmanager
def guard(name: str, url: str, *, hint: str | None = None) -> Iterator[None]:
    """Turn Redis connection errors and timeouts raised inside into :class:`~steward.errors.BackendUnavailable`.

    Other Redis errors (a wrong type, a script error) are bugs or bad data, not an outage: they pass through.
    """
    import redis

    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise unavailable(f"{name} (Redis)", url, exc, hint=hint) from exc
