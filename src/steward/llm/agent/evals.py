"""Step-level evaluation of the agent: tool choice, arguments and task success on a scripted task set.

Each task in ``data/tasks.jsonl`` names the caller's role, the tool calls
expected in order (with the arguments that must match; free-text arguments such
as ``reason`` are left out) and the run status expected (``completed``,
``needs_approval``...). Scores:

* tool-choice accuracy: expected positions whose tool matches, over
  ``max(len(expected), len(actual))`` summed over tasks (extra calls count as misses);
* argument accuracy: of the calls whose tool matched, the share whose arguments
  contain every expected key with the expected value;
* task success: every call right (tools, arguments, count) and the expected status.

Offline, the model is the scripted planner (:mod:`steward.llm.agent.scripted`)
served on 127.0.0.1 and reached through the gateway like any OpenAI-compatible
provider; with a real model configured, ``llm.agent.model`` is used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from steward._primitives import make_actor
from steward.errors import ValidationFailed
from steward.llm.agent.gate import ToolGate
from steward.llm.agent.loop import Agent
from steward.llm.gateway import Gateway
from steward.spec import ProviderSpec

if TYPE_CHECKING:
    from steward.spec import Spec
    from steward.workspace import Workspace

__all__ = ["EvalReport", "EvalTask", "TaskScore", "load_tasks", "run_eval", "score_task", "scripted_spec"]

logger = logging.getLogger(__name__)

EVAL_ACTOR = make_actor("system", "eval")
"""Who asks during an agent eval."""


@dataclass
class EvalTask:
    """One scripted task."""

    id: str
    task: str
    role: str
    expected: list[dict[str, Any]]
    status: str = "completed"


@dataclass
class TaskScore:
    """How one task went."""

    id: str
    tool_hits: int
    tool_total: int
    arg_hits: int
    arg_total: int
    success: bool
    status: str
    stop_reason: str | None
    actual: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class EvalReport:
    """The scores over a task set."""

    model: str
    n_tasks: int
    tool_choice_accuracy: float
    argument_accuracy: float
    task_success: float
    tasks: list[TaskScore]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def load_tasks(text: str | None = None) -> list[EvalTask]:
    """The shipped task set (or tasks from JSONL ``text``).

    Raises:
        ValidationFailed: a line is not a task.
    """
    raw = text if text is not None else resources.files("steward.llm.agent").joinpath("data", "tasks.jsonl").read_text(encoding="utf-8")
    tasks = []
    for i, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            tasks.append(
                EvalTask(str(d["id"]), str(d["task"]), str(d.get("role", "viewer")), list(d["expected"]), str(d.get("status", "completed")))
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidationFailed(f"tasks line {i}: {exc}", code="agent.bad_task") from None
    return tasks


def _args_match(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> bool:
    return all(k in actual and actual[k] == v for k, v in expected.items())


def score_task(task: EvalTask, actual: list[dict[str, Any]], status: str, stop_reason: str | None) -> TaskScore:
    """Score one run's calls against a task's expectations."""
    total = max(len(task.expected), len(actual))
    tool_hits = arg_hits = arg_total = 0
    for exp, act in zip(task.expected, actual, strict=False):
        if exp["tool"] == act["tool"]:
            tool_hits += 1
            arg_total += 1
            if _args_match(exp.get("arguments") or {}, act.get("arguments") or {}):
                arg_hits += 1
    success = tool_hits == total and arg_hits == arg_total and len(actual) == len(task.expected) and status == task.status
    return TaskScore(task.id, tool_hits, total, arg_hits, arg_total, success, status, stop_reason, actual)


def scripted_spec(spec: Spec, url: str, behaviour: str = "planner") -> Spec:
    """A copy of ``spec`` whose agent plans with the scripted planner at ``url`` (an OpenAI-compatible provider)."""
    return spec.with_overrides(
        {
            "llm.gateway.providers.scripted": ProviderSpec(kind="openai", base_url=url, max_retries=0, timeout_s=30.0),
            "llm.gateway.aliases.agent-scripted": [f"scripted:{behaviour}"],
            "llm.agent.model": "agent-scripted",
        }
    )


async def run_eval(ws: Workspace, tasks: list[EvalTask] | None = None, *, execute: bool = True) -> EvalReport:
    """Run every task through the agent and score it.

    Args:
        ws: The workspace (its ``llm.agent.model`` plans; use :func:`scripted_spec` for offline runs).
        tasks: Default: the shipped set.
        execute: False checks every call (allow-lists, approvals) but does not run tools.
    """
    tasks = tasks if tasks is not None else load_tasks()
    gateway = Gateway(ws)
    agent = Agent(ws, gateway=gateway, gate=ToolGate(ws, execute=execute))
    scores = []
    try:
        for t in tasks:
            run = await agent.run(t.task, role=t.role, actor=EVAL_ACTOR)
            actual = [{"tool": c.tool, "arguments": c.arguments} for c in run.calls]
            scores.append(score_task(t, actual, run.status, run.stop_reason))
    finally:
        gateway.flush()
    tool_hits = sum(s.tool_hits for s in scores)
    tool_total = sum(s.tool_total for s in scores)
    arg_hits = sum(s.arg_hits for s in scores)
    arg_total = sum(s.arg_total for s in scores)
    return EvalReport(
        model=ws.spec.llm.agent.model,
        n_tasks=len(scores),
        tool_choice_accuracy=tool_hits / tool_total if tool_total else 1.0,
        argument_accuracy=arg_hits / arg_total if arg_total else 1.0,
        task_success=sum(s.success for s in scores) / len(scores) if scores else 0.0,
        tasks=scores,
    )
