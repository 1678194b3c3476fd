"""API keys and roles, shared by the model server, the dashboard, MCP and the LLM gateway: one parse, one compare."""

from __future__ import annotations

import pytest

from steward.errors import AuthError, Forbidden
from steward.governance.access import ROLES, ApiKeys, KeyRing, Principal, bearer_token, key_digest, presented_key, role_allows


def test_roles_are_ordered_viewer_operator_admin() -> None:
    assert ROLES == ("viewer", "operator", "admin")
    assert role_allows("admin", "viewer") and role_allows("operator", "operator")
    assert not role_allows("viewer", "operator") and not role_allows("operator", "admin")
    assert not role_allows("root", "viewer") and not role_allows("admin", "root")  # an unknown role allows nothing


@pytest.mark.parametrize(
    ("authorization", "token"),
    [("Bearer k1", "k1"), ("bearer  k1 ", "k1"), ("BEARER k1", "k1"), ("Bearer ", None), ("Basic k1", None), ("k1", None), (None, None)],
)
def test_a_bearer_token_is_read_one_way(authorization: str | None, token: str | None) -> None:
    assert bearer_token(authorization) == token


def test_the_bearer_header_wins_over_x_api_key() -> None:
    assert presented_key("Bearer a", "b") == "a"
    assert presented_key("Basic a", "b") == "b" and presented_key(None, None) is None and presented_key(None, "") is None


def test_a_key_ring_keeps_digests_only_and_finds_the_first_match() -> None:
    ring = KeyRing([("secret-1", "one"), ("secret-2", "two"), ("secret-1", "shadowed")])
    assert len(ring) == 3 and "secret-1" not in repr(list(ring))
    assert next(d for d, _ in ring) == key_digest("secret-1")
    assert ring.find("secret-2") == "two" and ring.find("secret-1") == "one"
    assert ring.find("secret-") is None and ring.find("") is None and ring.find(None) is None


def test_api_keys_check_roles_through_the_shared_order() -> None:
    keys = ApiKeys({"v": ("viewer-key", "viewer"), "a": ("admin-key", "admin")})
    assert keys.check_key("a", "operator") == Principal("admin-key", "admin")
    with pytest.raises(Forbidden, match="needs operator"):
        keys.check_key("v", "operator")
    with pytest.raises(AuthError, match="invalid API key"):
        keys.check_key("x", "viewer")
    assert ApiKeys(required=False).check_key(None, "admin") == Principal("anonymous", "admin")
