"""Sign-in hardening shared by the HTTP edge: failed-attempt limits, CSRF tokens, server-side session revocation.

* :class:`AttemptLimiter` counts failed credentials per client (a wrong dashboard key, an unknown API key)
  in a sliding window; past the limit the client is locked out for a while and told when to come back
  (``Retry-After``), so a key cannot be guessed at the speed of the server. It keeps at most
  ``max_clients`` clients, so a flood of addresses cannot grow it without bound.
* :func:`new_csrf_token` / :func:`csrf_matches`: the dashboard's forms carry a random token that must match
  the one in a ``SameSite=Strict`` cookie (double submit), so another site cannot post a form for the user
  (login CSRF included: the login form is covered before any session exists).
* :class:`SessionRevocations`: a session is signed and expiring (:mod:`steward.governance.access`), so by
  itself it lives until it expires. Signing out revokes that one session on the server, and an admin can
  end every session of a principal (or all of them); the revocations live in the cache store (SQLite, or
  Redis shared by every replica) for as long as the sessions they end could still be presented.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from steward.backends.base import CacheStore
from steward.spec import Role

__all__ = ["AttemptLimiter", "Session", "SessionRevocations", "csrf_matches", "new_csrf_token"]

logger = logging.getLogger(__name__)

_ALL = "*"


@dataclass(frozen=True)
class Session:
    """A verified dashboard session: who, its id, when it was issued and when it expires (epoch seconds)."""

    name: str
    role: Role
    session_id: str
    issued_at: float
    expires_at: float


class AttemptLimiter:
    """Failed attempts per client in a sliding window, with a lock-out once there are too many.

    Args:
        max_failures: Failures allowed within ``window_s`` before the client is locked out.
        window_s: The window the failures are counted over.
        lockout_s: How long a locked-out client is refused, even with the right credentials.
        max_clients: Clients remembered at most (the least recently seen are forgotten first).
    """

    def __init__(self, max_failures: int = 10, window_s: float = 300.0, lockout_s: float = 300.0, max_clients: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str, *, now: float | None = None) -> float | None:
        """Seconds until ``client`` may try again, or None when it is not locked out."""
        t = time.monotonic() if now is None else now
        with self._lock:
            until = self._locked_until.get(client)
            if until is None:
                return None
            if until <= t:
                del self._locked_until[client]
                return None
            return until - t

    def failed(self, client: str, *, now: float | None = None) -> float | None:
        """Record one failure; return the lock-out in seconds when this one crossed the limit."""
        t = time.monotonic() if now is None else now
        with self._lock:
            seen = self._failures.pop(client, None) or deque()
            seen.append(t)
            while seen and seen[0] <= t - self.window_s:
                seen.popleft()
            self._failures[client] = seen
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
            if len(seen) < self.max_failures:
                return None
            seen.clear()
            self._locked_until[client] = t + self.lockout_s
            if len(self._locked_until) > self.max_clients:
                # forget the lock-outs that end soonest rather than grow without bound
                for stale in sorted(self._locked_until, key=self._locked_until.__getitem__)[: len(self._locked_until) - self.max_clients]:
                    del self._locked_until[stale]
        logger.warning("client %s locked out for %.0f s after %d failed sign-in attempts", client, self.lockout_s, self.max_failures)
        return self.lockout_s

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s failures after a good attempt."""
        with self._lock:
            self._failures.pop(client, None)


def new_csrf_token() -> str:
    """A fresh random token for a form and its cookie."""
    return secrets.token_urlsafe(32)


def csrf_matches(cookie: str | None, submitted: str | None) -> bool:
    """Whether the form's token equals the cookie's (constant time; both must be present)."""
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())


class SessionRevocations:
    """Sessions ended before they expire, shared through the cache store when there is one.

    Args:
        cache: The workspace's cache store (SQLite by default, Redis when configured); without one
            (an API started without a project) revocations are kept in this process only.
        max_ttl_s: The longest a session can live: a revocation is kept that long at most.
    """

    def __init__(self, cache: CacheStore | None, *, max_ttl_s: float) -> None:
        self._cache = cache
        self._max_ttl_s = max_ttl_s
        self._local: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def revoke(self, session: Session, *, now: float | None = None) -> None:
        """End one session (signing out)."""
        t = time.time() if now is None else now
        self._set(f"session-revoked:{session.session_id}", b"1", max(1.0, session.expires_at - t))

    def revoke_all(self, principal: str | None = None, *, now: float | None = None) -> None:
        """End every session issued until now, for one principal or (``None``) for everyone."""
        t = time.time() if now is None else now
        self._set(f"session-epoch:{principal or _ALL}", repr(t).encode(), self._max_ttl_s)

    def is_revoked(self, session: Session) -> bool:
        """Whether ``session`` was signed out or issued before a revoke-all that covers it."""
        if self._get(f"session-revoked:{session.session_id}") is not None:
            return True
        for who in (session.name, _ALL):
            epoch = self._get(f"session-epoch:{who}")
            if epoch is not None and session.issued_at <= float(epoch):
                return True
        return False

    def _set(self, key: str, value: bytes, ttl_s: float) -> None:
        if self._cache is not None:
            self._cache.cache_set(key, value, ttl_s)
            return
        with self._lock:
            self._local[key] = (value, time.monotonic() + ttl_s)

    def _get(self, key: str) -> bytes | None:
        if self._cache is not None:
            return self._cache.cache_get(key)
        with self._lock:
            hit = self._local.get(key)
            if hit is None:
                return None
            if hit[1] <= time.monotonic():
                del self._local[key]
                return None
            return hit[0]
