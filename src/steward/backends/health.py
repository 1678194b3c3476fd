"""Backend health: URLs safe to print, outside-server errors mapped into Steward's tree, and readiness probes.

Every client (psycopg, redis-py) raises its own connection errors. A backend maps them
to :class:`~steward.errors.BackendUnavailable` where it calls the client; :func:`as_unavailable`
is the net for one that escapes anyway (the API's last-resort handler answers 503 with it
instead of a plain-text 500). Classification goes by the exception's class names, so this
module imports a client library only in :func:`client_connection_errors`, and only one that is installed.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, Protocol, runtime_checkable

from steward.errors import BackendUnavailable

__all__ = [
    "RETRY_AFTER_S",
    "Pingable",
    "as_unavailable",
    "client_connection_errors",
    "client_reason",
    "probe_backends",
    "redact_url",
    "unavailable",
]

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 2
"""Seconds a client should wait before retrying after a backend outage (the ``Retry-After`` header)."""

_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:]*:)(?P<pw>[^/@]*)@", re.IGNORECASE)
_QUERY_SECRET = re.compile(r"(?P<key>(?:password|passwd|pwd)=)[^&]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (userinfo and ``password=`` query parameters)."""
    return _QUERY_SECRET.sub(r"\g<key>***", _PASSWORD.sub(r"\g<head>***@", url))


def client_reason(exc: BaseException) -> str:
    """The useful end of a client's error: its first line, from the last ``failed:`` on (libpq repeats the target)."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first.rsplit("failed: ", 1)[-1].strip() or first


def unavailable(backend: str, url: str, exc: BaseException | str, *, hint: str | None = None) -> BackendUnavailable:
    """A :class:`BackendUnavailable` naming the backend and its (redacted) URL, with the client's first line of error."""
    first = client_reason(exc) if not isinstance(exc, str) else exc
    return BackendUnavailable(
        f"{backend} at {redact_url(url)} is unavailable: {first}",
        hint=hint or f"check that the server at {redact_url(url)} is up; Steward reconnects by itself once it is",
        details={"backend": backend, "retry_after_s": RETRY_AFTER_S},
    )


# (module prefix, class name) of client errors that mean "the server is not there right now".
_UNAVAILABLE = {
    ("psycopg", "OperationalError"),
    ("psycopg", "AdminShutdown"),
    ("psycopg", "CannotConnectNow"),
    ("redis", "ConnectionError"),
    ("redis", "TimeoutError"),
    ("redis", "BusyLoadingError"),
}


def as_unavailable(exc: BaseException) -> BackendUnavailable | None:
    """The :class:`BackendUnavailable` an outside-server connection error stands for, or None for any other error."""
    if isinstance(exc, BackendUnavailable):
        return exc
    for cls in type(exc).__mro__:
        root = cls.__module__.split(".", 1)[0]
        if (root, cls.__name__) in _UNAVAILABLE:
            backend = "PostgreSQL" if root == "psycopg" else "Redis"
            first = (str(exc).strip().splitlines() or [cls.__name__])[0]
            return BackendUnavailable(
                f"{backend} is unavailable: {first}",
                hint=f"check that {backend} is up; Steward reconnects by itself once it is",
                details={"backend": backend.lower(), "retry_after_s": RETRY_AFTER_S},
            )
    return None


def client_connection_errors() -> tuple[type[Exception], ...]:
    """The installed clients' connection-error classes (psycopg, redis-py), for exception handlers keyed on a class."""
    found: list[type[Exception]] = []
    if importlib.util.find_spec("psycopg") is not None:
        import psycopg

        found.append(psycopg.OperationalError)
    if importlib.util.find_spec("redis") is not None:
        import redis

        found += [redis.ConnectionError, redis.TimeoutError]
    return tuple(found)


@runtime_checkable
class Pingable(Protocol):
    """A backend that can prove its server answers (one cheap round trip)."""

    def ping(self) -> None:
        """Return when the server answered; raise :class:`BackendUnavailable` when it did not."""
        ...


def _probe(opener: Callable[[], Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        backend = opener()  # opening may itself fail (a backend first used while its server is down)
        if isinstance(backend, Pingable):
            backend.ping()
    except Exception as exc:
        mapped = as_unavailable(exc)
        reason = mapped.message if mapped is not None else f"{type(exc).__name__}: {exc}"
        return {"ok": False, "reason": reason, "latency_ms": round((time.perf_counter() - t0) * 1000, 1)}
    return {"ok": True, "reason": None, "latency_ms": round((time.perf_counter() - t0) * 1000, 1)}


def probe_backends(openers: Mapping[str, tuple[str, Callable[[], Any]]], *, timeout_s: float = 2.0) -> dict[str, dict[str, Any]]:
    """Probe every backend at once, each in its own daemon thread, waiting at most ``timeout_s`` in all.

    Args:
        openers: Backend name -> (URL, a callable returning the opened backend).
        timeout_s: A probe still running after this is reported down ("no answer within ...").

    Returns:
        Backend name -> ``{"ok", "url", "reason", "latency_ms"}``.
    """
    futures: dict[str, Future[dict[str, Any]]] = {}
    for name, (_url, opener) in openers.items():
        fut: Future[dict[str, Any]] = Future()

        def run(f: Future[dict[str, Any]] = fut, o: Callable[[], Any] = opener) -> None:
            f.set_result(_probe(o))

        # daemon threads, not a pool: a probe stuck on a black-holed server must not hold up the next one
        threading.Thread(target=run, name=f"steward-probe-{name}", daemon=True).start()
        futures[name] = fut
    deadline = time.monotonic() + timeout_s
    out: dict[str, dict[str, Any]] = {}
    for name, fut in futures.items():
        url = redact_url(openers[name][0])
        try:
            state = fut.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            state = {"ok": False, "reason": f"no answer within {timeout_s:g} s", "latency_ms": round(timeout_s * 1000, 1)}
        out[name] = {"ok": state["ok"], "url": url, "reason": state["reason"], "latency_ms": state["latency_ms"]}
    return out
