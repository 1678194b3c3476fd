"""One-time approvals of write tool calls.

A write tool never runs on a model's say-so. When the agent (or an MCP client)
asks for one without an approval, a *pending request* is recorded with the
exact tool and arguments. An admin grants it (API or CLI) and receives a
one-time token. The token is stored only as its SHA-256, is bound to
``sha256(tool + canonical arguments)``, expires after ``llm.agent.approval_ttl_s``
and is spent by the first call it authorises: the same token for other
arguments, a second time, or too late, is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from steward._primitives import canonical_json, resolve_actor, utcnow
from steward.errors import Conflict, Forbidden, NotFound

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["ApprovalRequest", "Approvals", "call_hash", "canonical_json"]

logger = logging.getLogger(__name__)


def call_hash(tool: str, arguments: Mapping[str, Any]) -> str:
    """What an approval is bound to: SHA-256 of the tool name and its canonical arguments."""
    return hashlib.sha256(f"{tool}\n{canonical_json(dict(arguments))}".encode()).hexdigest()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class ApprovalRequest:
    """A write call waiting for, holding, or having spent an approval.

    Attributes:
        request_id: Id an admin approves (``steward agent approve ID``).
        tool: The write tool.
        arguments: Its canonical arguments.
        call_hash: SHA-256 of tool + arguments; the token is bound to it.
        status: ``pending``, ``granted`` or ``used``.
        requested_by: Who asked (``agent:...``, ``mcp:...``).
        run_id: The agent run that asked, if any.
        reason: The refusal that created the request (for people reading the queue).
        expires_at: Epoch seconds after which a granted token is refused.
    """

    request_id: str
    tool: str
    arguments: dict[str, Any]
    call_hash: str
    status: str
    requested_by: str
    run_id: str | None
    reason: str | None
    created_at: str
    granted_by: str | None = None
    granted_at: str | None = None
    expires_at: float | None = None
    used_at: str | None = None
    used_by_run: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (never holds the token)."""
        return asdict(self)


def _row(r: Mapping[str, Any]) -> ApprovalRequest:
    return ApprovalRequest(
        request_id=r["request_id"],
        tool=r["tool"],
        arguments=json.loads(r["arguments"]),
        call_hash=r["call_hash"],
        status=r["status"],
        requested_by=r["requested_by"],
        run_id=r["run_id"],
        reason=r["reason"],
        created_at=r["created_at"],
        granted_by=r["granted_by"],
        granted_at=r["granted_at"],
        expires_at=None if r["expires_at"] is None else float(r["expires_at"]),
        used_at=r["used_at"],
        used_by_run=r["used_by_run"],
    )


class Approvals:
    """The approval queue of a workspace (in its metadata store).

    Args:
        ws: The workspace.
        clock: Epoch seconds (tests pass a fake to expire tokens).
    """

    def __init__(self, ws: Workspace, *, clock: Callable[[], float] = time.time) -> None:
        self.ws = ws
        self.clock = clock

    @property
    def ttl_s(self) -> float:
        """Default lifetime of a granted token."""
        return float(self.ws.spec.llm.agent.approval_ttl_s)

    def request(
        self, tool: str, arguments: Mapping[str, Any], *, requested_by: str, run_id: str | None = None, reason: str | None = None
    ) -> ApprovalRequest:
        """Record a pending request for this exact call (an identical pending one is reused)."""
        h = call_hash(tool, arguments)
        md = self.ws.metadata
        existing = md.fetchone("SELECT * FROM agent_approvals WHERE call_hash = ? AND status = 'pending' ORDER BY created_at", (h,))
        if existing is not None:
            return _row(existing)
        req = ApprovalRequest(uuid.uuid4().hex[:16], tool, dict(arguments), h, "pending", requested_by, run_id, reason, utcnow())
        md.execute(
            "INSERT INTO agent_approvals (request_id, tool, arguments, call_hash, status, requested_by, run_id, reason, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (req.request_id, tool, canonical_json(req.arguments), h, "pending", requested_by, run_id, reason, req.created_at),
        )
        logger.info("approval request %s: %s %s (by %s)", req.request_id, tool, canonical_json(req.arguments), requested_by)
        return req

    def get(self, request_id: str) -> ApprovalRequest:
        """A request by id.

        Raises:
            NotFound: no such request.
        """
        row = self.ws.metadata.fetchone("SELECT * FROM agent_approvals WHERE request_id = ?", (request_id,))
        if row is None:
            raise NotFound(f"no approval request {request_id!r}", code="agent.approval_not_found", hint="see 'steward agent approvals'")
        return _row(row)

    def list(self, status: str | None = None) -> list[ApprovalRequest]:
        """Requests, oldest first (optionally of one status)."""
        if status:
            rows = self.ws.metadata.fetchall("SELECT * FROM agent_approvals WHERE status = ? ORDER BY created_at", (status,))
        else:
            rows = self.ws.metadata.fetchall("SELECT * FROM agent_approvals ORDER BY created_at")
        return [_row(r) for r in rows]

    def grant(self, request_id: str, *, admin: str, ttl_s: float | None = None) -> tuple[str, ApprovalRequest]:
        """Approve a pending request; return the one-time token (shown once, stored hashed) and the request.

        Raises:
            NotFound: no such request.
            Conflict: it was already granted or used.
        """
        req = self.get(request_id)
        if req.status != "pending":
            raise Conflict(f"approval request {request_id} is already {req.status}", code="agent.approval_not_pending")
        admin = resolve_actor(admin)
        token = "sap_" + secrets.token_urlsafe(24)
        expires = self.clock() + (ttl_s if ttl_s is not None else self.ttl_s)
        now = utcnow()
        n = self.ws.metadata.execute(
            "UPDATE agent_approvals SET status = 'granted', token_hash = ?, granted_by = ?, granted_at = ?, expires_at = ? "
            "WHERE request_id = ? AND status = 'pending'",
            (_token_hash(token), admin, now, expires, request_id),
        )
        if n != 1:
            raise Conflict(f"approval request {request_id} was granted concurrently", code="agent.approval_not_pending")
        req.status, req.granted_by, req.granted_at, req.expires_at = "granted", admin, now, expires
        self.ws.audit.append(
            "agent.approval.granted",
            f"approval:{request_id}",
            actor=admin,
            model=_model_of(req.arguments),
            inputs={"arguments": req.arguments},
            details={"tool": req.tool, "call_hash": req.call_hash, "expires_at": expires, "requested_by": req.requested_by},
        )
        return token, req

    def grant_call(self, tool: str, arguments: Mapping[str, Any], *, admin: str, ttl_s: float | None = None) -> tuple[str, ApprovalRequest]:
        """Approve a call directly (creates the request and grants it)."""
        req = self.request(tool, arguments, requested_by=admin, reason="granted directly by an admin")
        return self.grant(req.request_id, admin=admin, ttl_s=ttl_s)

    def consume(self, token: str, tool: str, arguments: Mapping[str, Any], *, actor: str, run_id: str | None = None) -> ApprovalRequest:
        """Spend a token on exactly this call.

        Raises:
            Forbidden: code ``agent.approval_invalid`` with ``details["why"]`` one of
                ``unknown``, ``other_call``, ``used``, ``expired``.
        """
        row = self.ws.metadata.fetchone("SELECT * FROM agent_approvals WHERE token_hash = ?", (_token_hash(token),))
        if row is None:
            raise _refused("unknown", "the approval token is not known")
        req = _row(row)
        if req.call_hash != call_hash(tool, arguments):
            raise _refused("other_call", f"the approval token is bound to another call ({req.tool} {canonical_json(req.arguments)})")
        if req.status == "used":
            raise _refused("used", f"the approval token was already used (at {req.used_at})")
        if req.expires_at is None or self.clock() > req.expires_at:
            raise _refused("expired", "the approval token has expired")
        now = utcnow()
        n = self.ws.metadata.execute(
            "UPDATE agent_approvals SET status = 'used', used_at = ?, used_by_run = ? WHERE request_id = ? AND status = 'granted'",
            (now, run_id, req.request_id),
        )
        if n != 1:  # another caller spent it between our read and our write
            raise _refused("used", "the approval token was already used")
        req.status, req.used_at, req.used_by_run = "used", now, run_id
        self.ws.audit.append(
            "agent.approval.used",
            f"approval:{req.request_id}",
            actor=actor,
            model=_model_of(req.arguments),
            inputs={"arguments": req.arguments},
            details={"tool": tool, "call_hash": req.call_hash, "run_id": run_id, "granted_by": req.granted_by},
        )
        return req


def _refused(why: str, message: str) -> Forbidden:
    return Forbidden(
        message,
        code="agent.approval_invalid",
        hint="ask an admin for a new approval of this exact call ('steward agent approve REQUEST_ID')",
        details={"why": why},
    )


def _model_of(arguments: Mapping[str, Any]) -> str | None:
    m = arguments.get("model")
    return m if isinstance(m, str) else None
