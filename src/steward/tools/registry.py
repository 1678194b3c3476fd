"""The tool registry: typed platform operations with JSON schemas and a permission level.

A :class:`Tool` is a name, a description, a permission (``read``, ``propose`` or
``write``), a pydantic model of its parameters (its JSON schema is what the
model and MCP clients see) and the function that runs it. One
:class:`ToolRegistry` serves the agent and the MCP server, so both expose the
same operations with the same checks.

Roles map to permissions (viewer → read; operator → read + propose; admin →
read + propose + write). Write tools additionally need a one-time approval;
that check lives with the approvals in :mod:`steward.llm.agent.gate`, because
it needs the metadata store.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from steward.errors import Forbidden, NotFound, ValidationFailed
from steward.governance.access import ROLES, Role

if TYPE_CHECKING:
    from steward.workspace import Workspace

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
    "to_jsonable",
]

logger = logging.getLogger(__name__)

Permission = Literal["read", "propose", "write"]
PERMISSIONS: tuple[Permission, ...] = ("read", "propose", "write")
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "propose"}),
    "admin": frozenset({"read", "propose", "write"}),
}


class ToolParams(BaseModel):
    """Base of every tool's parameters: unknown arguments are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ToolContext:
    """Who calls a tool, for audit entries and proposals.

    Attributes:
        actor: The caller (``agent:<run>`` on behalf of a user, ``mcp:<key>``...).
        role: The caller's role; never taken from tool output or model text.
        run_id: The agent run, when the call comes from one.
    """

    actor: str
    role: str
    run_id: str | None = None


ToolFn = Callable[["Workspace", Any, ToolContext], Any]


@dataclass(frozen=True)
class Tool:
    """One platform operation.

    Attributes:
        name: Stable name (``list_models``); what models and MCP clients call.
        description: What it does and when to use it (models read this).
        permission: ``read``, ``propose`` (drafts, changes nothing) or ``write`` (changes state).
        params: Pydantic model of the arguments.
        fn: ``fn(ws, params, ctx) -> JSON-able result``.
    """

    name: str
    description: str
    permission: Permission
    params: type[ToolParams]
    fn: ToolFn

    def json_schema(self) -> dict[str, Any]:
        """JSON schema of the arguments."""
        schema = self.params.model_json_schema()
        schema.pop("title", None)
        schema.setdefault("properties", {})
        schema["additionalProperties"] = False
        return schema

    def openai_schema(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry (function calling)."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": f"[{self.permission}] {self.description}", "parameters": self.json_schema()},
        }

    def validate(self, arguments: Mapping[str, Any] | None) -> ToolParams:
        """Validated arguments.

        Raises:
            ValidationFailed: unknown, missing or ill-typed arguments (each named).
        """
        try:
            return self.params.model_validate(dict(arguments or {}))
        except ValidationError as exc:
            errors = [{"field": ".".join(str(p) for p in e["loc"]) or "(arguments)", "message": e["msg"]} for e in exc.errors()]
            fields = ", ".join(e["field"] for e in errors)
            raise ValidationFailed(
                f"invalid arguments for tool {self.name}: {fields}",
                code="tool.invalid_arguments",
                hint=f"see the tool's JSON schema ({self.name})",
                details={"errors": errors},
            ) from None

    def canonical_arguments(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validated arguments with defaults filled, as plain JSON (what approvals are bound to)."""
        dumped: dict[str, Any] = self.validate(arguments).model_dump(mode="json")
        return dumped


def allowed(role: str, permission: str) -> bool:
    """Whether ``role`` may call tools of ``permission``."""
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


def to_jsonable(value: Any) -> Any:
    """A tool result as plain JSON types (dataclasses, dates and numpy scalars become JSON)."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    return json.loads(json.dumps(value, default=str))


class ToolRegistry:
    """Named tools; the same registry backs the agent and the MCP server."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, tool: Tool) -> Tool:
        """Add a tool (names are unique)."""
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is registered twice")
        if tool.permission not in PERMISSIONS:
            raise ValueError(f"tool {tool.name!r}: unknown permission {tool.permission!r}")
        self._tools[tool.name] = tool
        return tool

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def get(self, name: str) -> Tool:
        """A tool by name.

        Raises:
            NotFound: no such tool.
        """
        tool = self._tools.get(name)
        if tool is None:
            raise NotFound(f"no tool named {name!r}", code="tool.not_found", hint=f"known tools: {', '.join(sorted(self._tools))}")
        return tool

    def all(self) -> list[Tool]:
        """Every tool, by name."""
        return [self._tools[n] for n in sorted(self._tools)]

    def for_role(self, role: str) -> list[Tool]:
        """The tools a role may call (its allow-list)."""
        if role not in ROLE_PERMISSIONS:
            raise ValidationFailed(f"unknown role {role!r}", code="tool.unknown_role", hint=f"use one of {', '.join(ROLES)}")
        return [t for t in self.all() if allowed(role, t.permission)]

    def check_allowed(self, name: str, role: str) -> Tool:
        """The tool, if ``role`` may call it.

        Raises:
            NotFound: no such tool.
            Forbidden: the role's allow-list does not include it.
        """
        tool = self.get(name)
        if not allowed(role, tool.permission):
            raise Forbidden(
                f"tool {name} needs the {tool.permission} permission; role {role} does not have it",
                code="tool.not_allowed",
                hint="use a key with a higher role",
            )
        return tool

    def run(self, ws: Workspace, name: str, arguments: Mapping[str, Any] | None, ctx: ToolContext) -> Any:
        """Check the role, validate the arguments and run a tool (no approval check: see the agent's gate).

        Raises:
            NotFound, Forbidden, ValidationFailed: before anything runs.
        """
        tool = self.check_allowed(name, ctx.role)
        params = tool.validate(arguments)
        t0 = time.perf_counter()
        result = to_jsonable(tool.fn(ws, params, ctx))
        logger.debug("tool %s ran in %.1f ms for %s", name, (time.perf_counter() - t0) * 1000, ctx.actor)
        return result
