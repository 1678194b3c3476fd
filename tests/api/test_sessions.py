"""Dashboard session tokens: signed, expiring, bound to a key that still exists; the key never leaves the server."""

from __future__ import annotations

import pytest

from steward.api.auth import ApiKeys, Principal

KEYS = {"view-key-123": ("alice", "viewer"), "admin-key-456": ("root", "admin")}


def test_a_token_names_its_principal_and_never_contains_the_key() -> None:
    keys = ApiKeys(KEYS)
    token = keys.issue_session("view-key-123", now=1000.0)
    assert token is not None and "view-key-123" not in token
    assert keys.session_principal(token, now=1001.0) == Principal("alice", "viewer")
    assert keys.issue_session("not-a-key") is None


def test_expired_tampered_and_forged_tokens_are_refused() -> None:
    keys = ApiKeys(KEYS)
    token = keys.issue_session("view-key-123", ttl_s=60, now=1000.0)
    assert token is not None
    assert keys.session_principal(token, now=1059.0) is not None
    assert keys.session_principal(token, now=1061.0) is None  # expired
    body, sig = token.split(".")
    # a viewer's token edited to claim admin fails the signature
    import base64
    import json

    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["r"] = "admin"
    forged_body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    assert keys.session_principal(f"{forged_body}.{sig}", now=1001.0) is None
    for junk in ("", "forged", "a.b.c", f"{body}.", f".{sig}"):
        assert keys.session_principal(junk, now=1001.0) is None


def test_removing_the_key_ends_its_sessions_and_other_servers_with_the_same_keys_accept_them() -> None:
    token = ApiKeys(KEYS).issue_session("admin-key-456", now=1000.0)
    # another worker or replica configured with the same keys agrees (no shared state needed)
    assert ApiKeys(dict(KEYS)).session_principal(token, now=1001.0) == Principal("root", "admin")
    # the key rotated away: the session is over
    assert ApiKeys({"view-key-123": ("alice", "viewer")}).session_principal(token, now=1001.0) is None


def test_an_explicit_session_secret_is_used_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_SESSION_SECRET", "one")
    token = ApiKeys(KEYS).issue_session("view-key-123", now=1000.0)
    assert ApiKeys(KEYS).session_principal(token, now=1001.0) is not None
    monkeypatch.setenv("STEWARD_SESSION_SECRET", "two")
    assert ApiKeys(KEYS).session_principal(token, now=1001.0) is None
