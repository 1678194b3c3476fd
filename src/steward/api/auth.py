"""The FastAPI glue of API-key auth: read the presented key off a request and check it.

Everything else (key parsing, digests, constant-time lookup, role order, sessions, loading keys)
lives in :mod:`steward.governance.access`, shared with the dashboard, MCP and the LLM gateway; its
names are re-exported here for the routers. Clients send ``Authorization: Bearer KEY`` or
``X-API-Key: KEY``. No key: 401; a known key whose role is too low: 403. A client that presents too
many unknown keys is locked out for a while (429 with ``Retry-After``), so keys cannot be guessed at speed.
"""

from __future__ import annotations

import math

from fastapi import Request

from steward.errors import AuthError, Forbidden, LimitExceeded
from steward.governance.access import ROLES, ApiKeys, Principal, Role, load_keys, presented_key
from steward.governance.signin import AttemptLimiter

__all__ = ["ROLES", "ApiKeys", "Principal", "Role", "check_request", "client_of", "load_keys", "locked_out", "presented_key", "require"]


def check_request(keys: ApiKeys, request: Request, role: Role) -> Principal:
    """Authenticate and authorise one request against ``keys``.

    Raises:
        AuthError: no key or an unknown key (401).
        Forbidden: the key's role is below ``role`` (403).
    """
    if not keys.required:
        return Principal("anonymous", "admin")
    limiter: AttemptLimiter | None = getattr(request.app.state, "auth_attempts", None)
    client = client_of(request)
    if limiter is not None:
        locked_out(limiter, client)
    presented = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
    try:
        principal = keys.check_key(presented, role)
    except Forbidden:
        raise  # a known key with too low a role is not a guess
    except AuthError:
        # only a wrong key counts as a guess; a request without one is just unauthenticated
        if limiter is not None and presented:
            limiter.failed(client)
        raise
    if limiter is not None:
        limiter.succeeded(client)
    return principal


def client_of(request: Request) -> str:
    """The address a request came from (the peer; proxies' forwarding headers are not trusted here)."""
    return request.client.host if request.client else "unknown"


def locked_out(limiter: AttemptLimiter, client: str) -> None:
    """Refuse a locked-out client before looking at its credentials.

    Raises:
        LimitExceeded: 429 ``auth.too_many_attempts``, with ``retry_after_s`` for the ``Retry-After`` header.
    """
    wait = limiter.retry_after(client)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise LimitExceeded(
            "too many failed attempts with wrong keys from this client",
            code="auth.too_many_attempts",
            hint=f"wait {seconds} s, then use a valid key",
            details={"retry_after_s": seconds},
        )


def require(request: Request, role: Role) -> Principal:
    """Check the request against the app's keys (``app.state.api_keys``)."""
    keys: ApiKeys = request.app.state.api_keys
    return check_request(keys, request, role)
