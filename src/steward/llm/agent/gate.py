"""The one door every tool call goes through, for the agent and the MCP server alike.

Order of checks: the tool exists and the caller's role allows it (allow-list),
the arguments validate, and a write tool holds a valid one-time approval for
exactly these arguments. Only then does the tool run. Every call, refused or
not, is appended to the audit trail.

The caller's role comes from its credentials (an API key, the CLI's ``--role``),
never from a model's text or a tool's output, so nothing a tool returns can
widen what the next call may do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from steward.errors import StewardError, ValidationFailed
from steward.llm.agent.approvals import ApprovalRequest, Approvals, canonical_json
from steward.tools.builtin import default_registry
from steward.tools.registry import ToolContext, ToolRegistry, allowed, to_jsonable

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["CallOutcome", "CallStatus", "ToolGate"]

logger = logging.getLogger(__name__)

CallStatus = Literal["ok", "error", "refused", "approval_required"]


@dataclass
class CallOutcome:
    """What happened to one tool call.

    Attributes:
        tool: The tool asked for.
        arguments: The arguments as given (canonical once validated).
        status: ``ok``, ``error`` (the tool or its arguments failed), ``refused`` (not on the
            caller's allow-list) or ``approval_required`` (a write call without a valid approval).
        result: The tool's JSON result when ``ok``.
        error: What went wrong, for the caller and the model.
        code: The error's stable code (``tool.not_allowed``, ``agent.approval_required``...).
        request_id: The pending approval request of a refused write call.
        why: For a refused approval token: ``unknown``, ``other_call``, ``used`` or ``expired``.
        latency_ms: Time spent running the tool.
        result_size: Characters of the JSON result.
        permission: The tool's permission, when the tool exists.
    """

    tool: str
    arguments: dict[str, Any]
    status: CallStatus
    result: Any = None
    error: str | None = None
    code: str | None = None
    request_id: str | None = None
    why: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    result_size: int = 0
    permission: str | None = None

    def payload(self) -> dict[str, Any]:
        """What the caller (a model, an MCP client) sees."""
        out: dict[str, Any] = {"tool": self.tool, "status": self.status}
        if self.status == "ok":
            out["result"] = self.result
        else:
            out["error"] = self.error
            out["code"] = self.code
        if self.request_id:
            out["approval_request_id"] = self.request_id
        return out


class ToolGate:
    """Check and run tool calls.

    Args:
        ws: The workspace.
        registry: The tools (default: the built-in registry).
        approvals: The approval queue (default: the workspace's).
        execute: False runs every check but not the tool itself (evals against a live project).
    """

    def __init__(
        self, ws: Workspace, registry: ToolRegistry | None = None, approvals: Approvals | None = None, *, execute: bool = True
    ) -> None:
        self.ws = ws
        self.registry = registry or default_registry()
        self.approvals = approvals or Approvals(ws)
        self.execute = execute

    def call(
        self,
        name: str,
        arguments: Mapping[str, Any] | None,
        ctx: ToolContext,
        *,
        approval_tokens: Sequence[str] = (),
        source: str = "agent",
    ) -> CallOutcome:
        """Check and (if every check passes) run one call. Never raises for a refused or failed call."""
        args = dict(arguments or {})
        if name not in self.registry:
            out = CallOutcome(name, args, "refused", error=f"no tool named {name!r}", code="tool.not_found")
            self._audit_refusal(out, ctx, source)
            return out
        tool = self.registry.get(name)
        if not allowed(ctx.role, tool.permission):
            out = CallOutcome(
                name,
                args,
                "refused",
                error=f"tool {name} needs the {tool.permission} permission; role {ctx.role} does not have it",
                code="tool.not_allowed",
                permission=tool.permission,
            )
            self._audit_refusal(out, ctx, source)
            return out
        try:
            params = tool.validate(args)
        except StewardError as exc:
            out = CallOutcome(name, args, "error", error=exc.message, code=exc.code, permission=tool.permission)
            self._audit_call(out, ctx, source)
            return out
        args = params.model_dump(mode="json")
        approval: str | None = None
        if tool.permission == "write":
            approval, out_or_none = self._approve(name, args, ctx, approval_tokens)
            if out_or_none is not None:
                out_or_none.permission = tool.permission
                self._audit_refusal(out_or_none, ctx, source)
                return out_or_none
        t0 = time.perf_counter()
        try:
            result = to_jsonable(tool.fn(self.ws, params, ctx)) if self.execute else {"dry_run": True, "tool": name, "arguments": args}
            out = CallOutcome(name, args, "ok", result=result, permission=tool.permission, request_id=approval)
        except StewardError as exc:
            out = CallOutcome(name, args, "error", error=exc.message, code=exc.code, permission=tool.permission, request_id=approval)
        except Exception as exc:  # a tool's bug must not kill the run; the trail and the log keep it
            logger.exception("tool %s failed", name)
            out = CallOutcome(
                name, args, "error", error=f"{type(exc).__name__}: {exc}"[:500], code="tool.failed", permission=tool.permission
            )
        out.latency_ms = round((time.perf_counter() - t0) * 1000, 3)
        out.result_size = len(canonical_json(out.result)) if out.status == "ok" else 0
        self._audit_call(out, ctx, source)
        return out

    def grant_call(
        self, name: str, arguments: Mapping[str, Any] | None, *, admin: str, ttl_s: float | None = None
    ) -> tuple[str, ApprovalRequest]:
        """Approve one write call ahead of time: a one-time token bound to exactly these (validated) arguments.

        Only write tools take approvals; read and propose tools run on the role's allow-list alone.

        Raises:
            NotFound: no such tool.
            ValidationFailed: the tool is not a write tool (``agent.not_write_tool``), or bad arguments.
        """
        tool = self.registry.get(name)
        if tool.permission != "write":
            raise ValidationFailed(f"{name} is not a write tool; it needs no approval", code="agent.not_write_tool")
        return self.approvals.grant_call(name, tool.canonical_arguments(arguments), admin=admin, ttl_s=ttl_s)

    def _approve(self, name: str, args: dict[str, Any], ctx: ToolContext, tokens: Sequence[str]) -> tuple[str | None, CallOutcome | None]:
        why: list[str] = []
        errors: list[str] = []
        for token in tokens:
            try:
                req = self.approvals.consume(token, name, args, actor=ctx.actor, run_id=ctx.run_id)
            except StewardError as exc:
                why.append(str(exc.details.get("why", exc.code)))
                errors.append(exc.message)
                continue
            return req.request_id, None
        req = self.approvals.request(
            name, args, requested_by=ctx.actor, run_id=ctx.run_id, reason="; ".join(errors) or "write tools need an approval"
        )
        msg = (
            f"{name} changes state and needs an admin's one-time approval of this exact call"
            + (f" ({'; '.join(errors)})" if errors else "")
            + f"; pending approval request {req.request_id}"
        )
        return None, CallOutcome(
            name, args, "approval_required", error=msg, code="agent.approval_required", request_id=req.request_id, why=why
        )

    def _audit_refusal(self, out: CallOutcome, ctx: ToolContext, source: str) -> None:
        self.ws.audit.append(
            "agent.refused",
            f"tool:{out.tool}",
            actor=ctx.actor,
            model=_model_of(out.arguments),
            inputs={"arguments": out.arguments},
            details={
                "source": source,
                "run_id": ctx.run_id,
                "role": ctx.role,
                "status": out.status,
                "code": out.code,
                "why": out.why,
                "error": out.error,
                "approval_request_id": out.request_id,
            },
        )

    def _audit_call(self, out: CallOutcome, ctx: ToolContext, source: str) -> None:
        self.ws.audit.append(
            "agent.tool_call",
            f"tool:{out.tool}",
            actor=ctx.actor,
            model=_model_of(out.arguments),
            inputs={"arguments": out.arguments},
            outputs={"result": out.result} if out.status == "ok" else None,
            details={
                "source": source,
                "run_id": ctx.run_id,
                "role": ctx.role,
                "permission": out.permission,
                "status": out.status,
                "code": out.code,
                "error": out.error,
                "latency_ms": out.latency_ms,
                "result_size": out.result_size,
                "approval_request_id": out.request_id,
                "executed": self.execute,
            },
        )


def _model_of(arguments: Mapping[str, Any]) -> str | None:
    m = arguments.get("model")
    return m if isinstance(m, str) else None
