"""The bounded operations agent: plan → act → observe through the gateway, with approvals for writes.

Usage::

    from steward.llm.agent import Agent, Approvals

    run = await Agent(ws).run("Roll back flights_delay: the canary breached", role="admin", actor="alice")
    run.status, run.stop_reason, run.pending_approval     # "needs_approval", "approval_required", "3f2c..."
    token, _ = Approvals(ws).grant(run.pending_approval, admin="bob")
    run = await Agent(ws).run("Roll back flights_delay: the canary breached", role="admin", approval_tokens=[token])

Bounds (``llm.agent`` in ``steward.yaml``): ``max_steps``, ``max_tokens``, ``max_usd``,
``max_seconds``, and the caller role's tool allow-list. Every step goes to the trace and
the audit trail. :func:`run_eval` scores tool choice, arguments and task success on a
scripted task set.
"""

from steward.llm.agent.approvals import ApprovalRequest, Approvals, call_hash, canonical_json
from steward.llm.agent.evals import EvalReport, EvalTask, TaskScore, load_tasks, run_eval, score_task, scripted_spec
from steward.llm.agent.gate import CallOutcome, ToolGate
from steward.llm.agent.loop import Agent
from steward.llm.agent.runs import STOP_REASONS, AgentRun, AgentStep, ToolCallRecord, get_run, list_runs

__all__ = [
    "STOP_REASONS",
    "Agent",
    "AgentRun",
    "AgentStep",
    "ApprovalRequest",
    "Approvals",
    "CallOutcome",
    "EvalReport",
    "EvalTask",
    "TaskScore",
    "ToolCallRecord",
    "ToolGate",
    "call_hash",
    "canonical_json",
    "get_run",
    "list_runs",
    "load_tasks",
    "run_eval",
    "score_task",
    "scripted_spec",
]
