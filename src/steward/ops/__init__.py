"""The service layer: every operation a user can trigger, one function each, for every edge.

The CLI (``steward ...``), the HTTP API (``steward serve``), MCP (``steward mcp``) and the agent's
tools call these functions and only parse their input and format the result; a script can call
them the same way. Each takes a :class:`~steward.workspace.Workspace` (and, where a running model
server must apply the change at once, an optional :class:`LiveServer`) and returns plain
dataclasses; failures are :class:`~steward.errors.StewardError` subclasses with stable codes.

* registry: :func:`promote`, :func:`rollback`, :func:`move_alias` (``champion`` moves are gated),
  :func:`model_aliases`, :func:`describe_model`;
* rollouts: :func:`start_rollout`, :func:`promote_rollout`, :func:`abort_rollout`,
  :func:`set_rollout_weight`, :func:`evaluate_rollout`, :func:`rollout_status`, :func:`reload_models`;
* training: :func:`train` (registers a challenger), :func:`reproduce` (with the verdict), :func:`run_gate`;
* monitoring and the self-healing loop: :func:`run_monitor`, :func:`monitor_report`, :func:`run_loop`;
* the agent: :func:`agent_role` (a run's role never exceeds its caller's).

Layering: ``steward.ops`` sits above the stages (loop, monitoring, serving, registry, training,
features, data, llm) and below the edges; the agent and its tools are clients of it.
"""

from steward.ops._agent import agent_role
from steward.ops._models import AliasMove, ModelDescription, describe_model, model_aliases, move_alias, promote, rollback
from steward.ops._monitor import MonitorPass, monitor_report, run_loop, run_monitor
from steward.ops._rollouts import (
    RolloutEvaluation,
    RolloutStatus,
    abort_rollout,
    evaluate_rollout,
    promote_rollout,
    reload_models,
    rollout_policy,
    rollout_status,
    set_rollout_weight,
    start_rollout,
)
from steward.ops._server import LiveServer
from steward.ops._training import reproduce, run_gate, train

__all__ = [
    "AliasMove",
    "LiveServer",
    "ModelDescription",
    "MonitorPass",
    "RolloutEvaluation",
    "RolloutStatus",
    "abort_rollout",
    "agent_role",
    "describe_model",
    "evaluate_rollout",
    "model_aliases",
    "monitor_report",
    "move_alias",
    "promote",
    "promote_rollout",
    "reload_models",
    "reproduce",
    "rollback",
    "rollout_policy",
    "rollout_status",
    "run_gate",
    "run_loop",
    "run_monitor",
    "set_rollout_weight",
    "start_rollout",
    "train",
]
