"""Agent runs as records: what a run, a turn and a tool call keep, and how they are stored and read back.

Runs live in the ``agent_runs`` table of the workspace's metadata store; every turn and every run
also goes on the audit trail (and, for turns, on the trace).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from steward._primitives import make_actor, utcnow
from steward.errors import NotFound

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from steward.workspace import Workspace

__all__ = [
    "STOP_REASONS",
    "AgentRun",
    "AgentStep",
    "ToolCallRecord",
    "audit_step",
    "finish_run",
    "get_run",
    "insert_run",
    "list_runs",
]

logger = logging.getLogger(__name__)

STOP_REASONS = (
    "max_steps",
    "max_tokens",
    "max_usd",
    "max_seconds",
    "allow_list",
    "approval_required",
    "guardrail",
    "gateway_budget",
    "gateway_rate_limit",
    "error",
)


@dataclass
class ToolCallRecord:
    """One tool call inside a step (what the trace and the audit trail keep)."""

    tool: str
    arguments: dict[str, Any]
    status: str
    result_size: int
    latency_ms: float
    code: str | None = None
    error: str | None = None
    request_id: str | None = None
    flags: list[str] = field(default_factory=list)


@dataclass
class AgentStep:
    """One model turn: what it said, the calls it made and what the turn cost.

    Attributes:
        n: 1-based turn number.
        thought: The model's text alongside its tool calls (its summary of the plan), if any.
        calls: The tool calls of the turn, as checked and run.
        tokens: Prompt + completion tokens of the turn.
        cost_usd: Spend of the turn.
        latency_ms: Model latency of the turn.
    """

    n: int
    thought: str | None
    calls: list[ToolCallRecord]
    tokens: int
    cost_usd: float
    latency_ms: float
    started_ns: int = 0


@dataclass
class AgentRun:
    """A finished (or stopped) run.

    Attributes:
        run_id: The run's id (``GET /v1/agent/runs/{id}``).
        status: ``completed``, ``stopped`` (a bound), ``needs_approval``, ``refused`` (guardrail) or ``failed``.
        stop_reason: Which bound or check stopped it (one of :data:`STOP_REASONS`), None when completed.
        answer: The model's final answer, or what stopped the run.
        pending_approval: The approval request to grant, when ``needs_approval``.
    """

    run_id: str
    task: str
    role: str
    actor: str
    status: str = "running"
    stop_reason: str | None = None
    answer: str | None = None
    steps: list[AgentStep] = field(default_factory=list)
    tokens: int = 0
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    pending_approval: str | None = None
    created_at: str = field(default_factory=utcnow)
    finished_at: str | None = None
    limits: dict[str, Any] = field(default_factory=dict)

    @property
    def agent_actor(self) -> str:
        """Who the agent acts as during this run: ``agent:RUN_ID:ACTOR``."""
        return make_actor("agent", self.run_id, on_behalf_of=self.actor)

    @property
    def calls(self) -> list[ToolCallRecord]:
        """Every tool call of the run, in order."""
        return [c for s in self.steps for c in s.calls]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def audit_step(ws: Workspace, tracer: Tracer | None, run: AgentRun, step: AgentStep) -> None:
    """Record one turn: an ``agent.step`` span (when traced) and an ``agent.step`` audit event."""
    if tracer is not None:
        # One span per turn, under the run's span (the gateway's llm.chat span of the turn is its sibling).
        span = tracer.start_span(
            "agent.step",
            start_time=step.started_ns or None,
            attributes={
                "agent.run_id": run.run_id,
                "agent.step": step.n,
                "agent.thought": (step.thought or "")[:200],
                "agent.tools": ",".join(c.tool for c in step.calls),
                "agent.arguments": json.dumps([c.arguments for c in step.calls], default=str)[:1000],
                "agent.statuses": ",".join(c.status for c in step.calls),
                "agent.result_size": sum(c.result_size for c in step.calls),
                "agent.tokens": step.tokens,
                "agent.cost_usd": step.cost_usd,
                "agent.latency_ms": step.latency_ms,
            },
        )
        span.end()
    ws.audit.append(
        "agent.step",
        f"agent_run:{run.run_id}",
        actor=run.agent_actor,
        details={
            "run_id": run.run_id,
            "step": step.n,
            "thought": (step.thought or "")[:500] or None,
            "calls": [
                {"tool": c.tool, "arguments": c.arguments, "status": c.status, "result_size": c.result_size, "code": c.code}
                for c in step.calls
            ],
            "tokens": step.tokens,
            "cost_usd": step.cost_usd,
            "latency_ms": step.latency_ms,
        },
    )


def insert_run(ws: Workspace, run: AgentRun) -> None:
    """Record a run as it starts (status ``running``)."""
    ws.metadata.execute(
        "INSERT INTO agent_runs (run_id, task, actor, role, status, created_at, details) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (run.run_id, run.task, run.actor, run.role, run.status, run.created_at, json.dumps({"limits": run.limits})),
    )


def finish_run(ws: Workspace, run: AgentRun) -> None:
    """Record a run's outcome and its ``agent.run`` audit event (a failure to record is logged, never raised)."""
    try:
        ws.metadata.execute(
            "UPDATE agent_runs SET status = ?, stop_reason = ?, answer = ?, steps = ?, tokens = ?, cost_usd = ?, pending_approval = ?, "
            "finished_at = ?, details = ? WHERE run_id = ?",
            (
                run.status,
                run.stop_reason,
                run.answer,
                len(run.steps),
                run.tokens,
                run.cost_usd,
                run.pending_approval,
                run.finished_at,
                json.dumps(run.to_dict(), default=str),
                run.run_id,
            ),
        )
        ws.audit.append(
            "agent.run",
            f"agent_run:{run.run_id}",
            actor=run.actor,
            inputs={"task": run.task},
            outputs={"answer": run.answer or ""},
            details={
                "role": run.role,
                "status": run.status,
                "stop_reason": run.stop_reason,
                "steps": len(run.steps),
                "tool_calls": len(run.calls),
                "tokens": run.tokens,
                "cost_usd": run.cost_usd,
                "elapsed_s": run.elapsed_s,
                "pending_approval": run.pending_approval,
            },
        )
    except Exception:
        logger.exception("could not record agent run %s", run.run_id)


def get_run(ws: Workspace, run_id: str) -> dict[str, Any]:
    """A recorded run with its steps.

    Raises:
        NotFound: no such run.
    """
    row = ws.metadata.fetchone("SELECT * FROM agent_runs WHERE run_id = ?", (run_id,))
    if row is None:
        raise NotFound(f"no agent run {run_id!r}", code="agent.run_not_found")
    details = json.loads(row.get("details") or "{}")
    if "steps" in details:
        return dict(details)
    out = dict(row)
    out["details"] = details
    return out


def list_runs(ws: Workspace, limit: int = 50) -> list[dict[str, Any]]:
    """Recent runs (newest first), without their steps."""
    rows = ws.metadata.fetchall(
        "SELECT run_id, task, actor, role, status, stop_reason, steps, tokens, cost_usd, pending_approval, created_at, finished_at "
        f"FROM agent_runs ORDER BY created_at DESC LIMIT {int(limit)}"
    )
    return [dict(r) for r in rows]
