"""API keys and roles, below every edge and stage: parsing, digests, constant-time lookup, role order.

One module does what the model server, the dashboard, MCP and the LLM gateway all need, so there is
one way to read a presented key and one way to compare it:

* a presented key comes from ``Authorization: Bearer KEY`` (first) or ``X-API-Key: KEY``
  (:func:`bearer_token`, :func:`presented_key`);
* keys are kept only as SHA-256 digests (:func:`key_digest`) in a :class:`KeyRing`, and a presented
  key is compared against every one of them with :func:`hmac.compare_digest` (no early exit), so
  timing reveals neither which key nor how much of it matched;
* roles are ordered viewer < operator < admin (:data:`ROLES`, :func:`role_allows`).

The model server's keys (:class:`ApiKeys`, :func:`load_keys`) come from, all merged:

* ``serving.auth.keys`` in ``steward.yaml`` (each secret read from its ``key_env``);
* ``STEWARD_API_KEYS``: ``KEY:ROLE`` pairs separated by commas;
* a secrets file (``serving.auth.keys_file`` or ``STEWARD_API_KEYS_FILE``): a YAML/JSON
  mapping ``key: role`` (or a list of ``{key, role, name}``), e.g. a mounted Kubernetes Secret.

No key: 401 (:class:`~steward.errors.AuthError`); a known key whose role is too low: 403 (:class:`~steward.errors.Forbidden`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, get_args

import yaml

from steward.errors import AuthError, Forbidden, SpecError
from steward.governance.signin import Session
from steward.spec import Role

if TYPE_CHECKING:
    from steward.spec import ServingAuthSpec, Spec

__all__ = [
    "ROLES",
    "ApiKeys",
    "KeyRing",
    "Principal",
    "Role",
    "bearer_token",
    "key_digest",
    "load_keys",
    "presented_key",
    "role_allows",
]

logger = logging.getLogger(__name__)

ROLES: Final[tuple[Role, ...]] = get_args(Role)
"""Every role, lowest first."""

T = TypeVar("T")


def role_allows(have: str, need: str) -> bool:
    """Whether role ``have`` is at least ``need`` (unknown roles allow nothing)."""
    return have in ROLES and need in ROLES and ROLES.index(have) >= ROLES.index(need)  # type: ignore[arg-type]


def key_digest(secret: str) -> bytes:
    """The SHA-256 digest a key is kept as (the secret itself is never stored)."""
    return hashlib.sha256(secret.encode()).digest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None for another scheme or no token."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    token = value.strip()
    return token if scheme.lower() == "bearer" and token else None


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a client presented: ``Authorization: Bearer KEY`` first, else ``X-API-Key``."""
    return bearer_token(authorization) or x_api_key or None


class KeyRing(Generic[T]):
    """Secrets kept as digests, each mapped to what it identifies; lookups take the same time for every key.

    Args:
        entries: (secret, value) pairs; the secrets are digested at once and not kept.
    """

    def __init__(self, entries: Iterable[tuple[str, T]] = ()) -> None:
        self._entries: list[tuple[bytes, T]] = [(key_digest(secret), value) for secret, value in entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[bytes, T]]:
        """(digest, value) pairs, e.g. to derive a secret from the configured keys."""
        return iter(self._entries)

    def find(self, presented: str | None) -> T | None:
        """What a presented secret identifies, or None; compared against every key, no early exit."""
        if not presented:
            return None
        d = key_digest(presented)
        found: T | None = None
        for digest, value in self._entries:
            if hmac.compare_digest(d, digest) and found is None:
                found = value
        return found


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and role."""

    name: str
    role: Role


class ApiKeys:
    """The model server's keys (as digests) and whether a key is required at all."""

    def __init__(self, keys: Mapping[str, tuple[str, Role]] | None = None, *, required: bool = True) -> None:
        self._ring: KeyRing[Principal] = KeyRing((k, Principal(name, role)) for k, (name, role) in (keys or {}).items())
        self.required = required

    def __len__(self) -> int:
        return len(self._ring)

    def identify(self, presented: str | None) -> Principal | None:
        """The principal of a presented key, or None; constant time over all keys."""
        return self._ring.find(presented)

    def check_key(self, presented: str | None, role: Role) -> Principal:
        """Authenticate and authorise a presented key (see :func:`presented_key`).

        Raises:
            AuthError: no key or an unknown key (401).
            Forbidden: the key's role is below ``role`` (403).
        """
        if not self.required:
            return Principal("anonymous", "admin")
        principal = self.identify(presented)
        if principal is None:
            raise AuthError(
                "missing API key" if not presented else "invalid API key",
                hint="send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
                if len(self)
                else "no API keys are configured: set STEWARD_API_KEYS",
            )
        if not role_allows(principal.role, role):
            raise Forbidden(
                f"key {principal.name!r} has role {principal.role}; this needs {role}", hint=f"use a key with role {role} or higher"
            )
        return principal

    # -- browser sessions ---------------------------------------------------------------------
    def _session_secret(self) -> bytes:
        # STEWARD_SESSION_SECRET when set; otherwise derived from the key digests, so every worker
        # and replica with the same keys agrees on it without configuration, and rotating the keys
        # ends every session. The digests are only as public as the keys themselves.
        env = os.environ.get("STEWARD_SESSION_SECRET")
        if env:
            return hashlib.sha256(env.encode()).digest()
        h = hashlib.sha256(b"steward-dashboard-session\0")
        for digest, principal in sorted(self._ring, key=lambda kp: kp[0]):
            h.update(digest + principal.name.encode() + b"\0" + principal.role.encode() + b"\0")
        return h.digest()

    def issue_session(self, key: str, *, ttl_s: float = 12 * 3600, now: float | None = None) -> str | None:
        """A signed, expiring session token for a valid key (the browser keeps this, never the key).

        The token names the principal and a fingerprint of its key, so it stops working when that
        key is removed, and carries its expiry; it is ``payload.signature`` in URL-safe base64 with
        an HMAC-SHA256 signature. Returns None for an unknown key.
        """
        principal = self.identify(key)
        if principal is None:
            return None
        issued = now if now is not None else time.time()
        payload = {
            "n": principal.name,
            "r": principal.role,
            "k": key_digest(key).hex()[:16],
            "e": int(issued + ttl_s),
            # the id and issue time let the server revoke this one session, or every session issued before a moment
            "i": secrets.token_hex(8),
            "t": issued,
        }
        body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).rstrip(b"=")
        sig = base64.urlsafe_b64encode(hmac.new(self._session_secret(), body, hashlib.sha256).digest()).rstrip(b"=")
        return (body + b"." + sig).decode()

    def session_principal(self, token: str | None, *, now: float | None = None) -> Principal | None:
        """The principal of a session token from :meth:`issue_session`, or None if forged, expired or its key is gone."""
        session = self.session(token, now=now)
        return Principal(session.name, session.role) if session is not None else None

    def session(self, token: str | None, *, now: float | None = None) -> Session | None:
        """The verified session of a token from :meth:`issue_session`, or None if forged, expired or its key is gone.

        Revocation is checked by the caller (:class:`~steward.governance.signin.SessionRevocations`), which holds the
        server-side state; this check needs none.
        """
        if not token or token.count(".") != 1:
            return None
        body, _, sig = token.encode().partition(b".")
        want = base64.urlsafe_b64encode(hmac.new(self._session_secret(), body, hashlib.sha256).digest()).rstrip(b"=")
        if not hmac.compare_digest(sig, want):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
            name, role, fingerprint, expires = str(payload["n"]), str(payload["r"]), str(payload["k"]), int(payload["e"])
            session_id, issued = str(payload.get("i", "")), float(payload.get("t", 0.0))
        except (ValueError, KeyError, TypeError):
            return None
        if expires < (now if now is not None else time.time()):
            return None
        for digest, principal in self._ring:
            if digest.hex()[:16] == fingerprint and principal.name == name and principal.role == role:
                return Session(principal.name, principal.role, session_id, issued, float(expires))
        return None


def _role(value: Any, where: str) -> Role:
    role = str(value).strip().lower()
    if role not in ROLES:
        raise SpecError(f"{where}: unknown role {value!r}", code="auth.bad_role", hint=f"use one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def _from_file(path: Path) -> dict[str, tuple[str, Role]]:
    if not path.exists():
        raise SpecError(
            f"API keys file {path} does not exist", code="auth.keys_file", hint="mount the secret or fix serving.auth.keys_file"
        )
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.suffix != ".json" else json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, tuple[str, Role]] = {}
    if isinstance(data, Mapping):
        for i, (key, role) in enumerate(data.items()):
            out[str(key)] = (f"file-{i + 1}", _role(role, str(path)))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            if not isinstance(item, Mapping) or "key" not in item:
                raise SpecError(f"{path}: entry {i} needs 'key' and 'role'", code="auth.keys_file")
            out[str(item["key"])] = (str(item.get("name", f"file-{i + 1}")), _role(item.get("role", "viewer"), str(path)))
    elif data is not None:
        raise SpecError(f"{path}: expected a mapping key → role", code="auth.keys_file")
    return out


def load_keys(auth: ServingAuthSpec, spec: Spec | None = None, environ: Mapping[str, str] | None = None) -> ApiKeys:
    """Collect keys from the spec, ``STEWARD_API_KEYS`` and the secrets file."""
    env = os.environ if environ is None else environ
    keys: dict[str, tuple[str, Role]] = {}
    for name, k in auth.keys.items():
        secret = env.get(k.key_env)
        if secret:
            keys[secret] = (name, k.role)
        else:
            logger.warning("API key %s: environment variable %s is not set; the key is disabled", name, k.key_env)
    for i, pair in enumerate(p for p in env.get("STEWARD_API_KEYS", "").split(",") if p.strip()):
        key, _, role = pair.strip().rpartition(":")
        if not key:
            raise SpecError("STEWARD_API_KEYS: write KEY:ROLE pairs separated by commas", code="auth.bad_env")
        keys[key] = (f"env-{i + 1}", _role(role, "STEWARD_API_KEYS"))
    file = env.get("STEWARD_API_KEYS_FILE") or auth.keys_file
    if file:
        path = spec.resolve(file) if spec is not None else Path(file)
        keys.update(_from_file(path))
    if auth.required and not keys:
        logger.warning("serving.auth.required is on but no API key is configured: every protected request gets 401")
    return ApiKeys(keys, required=auth.required)
