"""The FastAPI glue of API-key auth: read the presented key off a request and check it.

Everything else (key parsing, digests, constant-time lookup, role order, sessions, loading keys)
lives in :mod:`steward.governance.access`, shared with the dashboard, MCP and the LLM gateway; its
names are re-exported here for the routers. Clients send ``Authorization: Bearer KEY`` or
``X-API-Key: KEY``. No key: 401; a known key whose role is too low: 403.
"""

from __future__ import annotations

from fastapi import Request

from steward.governance.access import ROLES, ApiKeys, Principal, Role, load_keys, presented_key

__all__ = ["ROLES", "ApiKeys", "Principal", "Role", "check_request", "load_keys", "presented_key", "require"]


def check_request(keys: ApiKeys, request: Request, role: Role) -> Principal:
    """Authenticate and authorise one request against ``keys``.

    Raises:
        AuthError: no key or an unknown key (401).
        Forbidden: the key's role is below ``role`` (403).
    """
    if not keys.required:
        return Principal("anonymous", "admin")
    return keys.check_key(presented_key(request.headers.get("authorization"), request.headers.get("x-api-key")), role)


def require(request: Request, role: Role) -> Principal:
    """Check the request against the app's keys (``app.state.api_keys``)."""
    keys: ApiKeys = request.app.state.api_keys
    return check_request(keys, request, role)
