"""Tools: Steward's operations as typed, permissioned functions, defined once for the agent and the MCP server.

Usage::

    from steward.tools import ToolContext, default_registry, tools_for_role

    reg = default_registry()
    [t.name for t in tools_for_role("viewer")]        # read tools only
    reg.run(ws, "list_models", {}, ToolContext(actor="me", role="viewer"))

Write tools also need a one-time approval; call them through
:class:`steward.llm.agent.ToolGate`, which the agent and the MCP server share.
"""

from steward.tools.builtin import builtin_tools, default_registry, tools_for_role
from steward.tools.registry import (
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    Permission,
    Role,
    Tool,
    ToolContext,
    ToolParams,
    ToolRegistry,
    allowed,
    to_jsonable,
)

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "ROLE_PERMISSIONS",
    "Permission",
    "Role",
    "Tool",
    "ToolContext",
    "ToolParams",
    "ToolRegistry",
    "allowed",
    "builtin_tools",
    "default_registry",
    "to_jsonable",
    "tools_for_role",
]
