"""The role an agent run gets: the caller's own, or a lower one when asked; never a higher one."""

from __future__ import annotations

from steward.errors import Forbidden, ValidationFailed
from steward.governance.access import ROLES, Principal, Role, role_allows

__all__ = ["agent_role"]


def agent_role(caller: Principal, requested: str | None = None) -> Role:
    """The role to run the agent with for ``caller``: ``requested`` if it is no higher than the caller's, else refused.

    Raises:
        ValidationFailed: ``requested`` is no role (the field ``role`` is named).
        Forbidden: ``requested`` is above the caller's role (``agent.role_too_high``).
    """
    role = requested or caller.role
    if role not in ROLES:
        raise ValidationFailed(f"unknown role {role!r}", details={"errors": [{"field": "role", "message": "viewer, operator or admin"}]})
    if not role_allows(caller.role, role):
        raise Forbidden(f"key {caller.name!r} has role {caller.role}; it cannot run the agent as {role}", code="agent.role_too_high")
    return role
