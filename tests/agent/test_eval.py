"""The scripted step-level eval: tool choice, arguments and task success, offline through the gateway."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from steward.llm.agent import EvalTask, load_tasks, run_eval, score_task, scripted_spec
from steward.llm.agent.scripted import ScriptedServer
from steward.tools import default_registry
from steward.workspace import Workspace

pytestmark = pytest.mark.anyio


def test_task_set_is_well_formed() -> None:
    tasks = load_tasks()
    assert len(tasks) >= 20 and len({t.id for t in tasks}) == len(tasks)
    reg = default_registry()
    for t in tasks:
        assert t.role in ("viewer", "operator", "admin")
        for call in t.expected:
            assert reg.get(call["tool"]).params.model_fields.keys() >= call["arguments"].keys()
    assert {t.status for t in tasks} == {"completed", "needs_approval"}
    assert any(len(t.expected) > 1 for t in tasks) and any(not t.expected for t in tasks)


def test_scoring_penalises_wrong_tools_arguments_and_status() -> None:
    task = EvalTask("x", "t", "viewer", [{"tool": "drift_report", "arguments": {"model": "m"}}, {"tool": "list_models", "arguments": {}}])
    right = [{"tool": "drift_report", "arguments": {"model": "m", "limit": 3}}, {"tool": "list_models", "arguments": {}}]
    assert score_task(task, right, "completed", None).success
    wrong_arg = score_task(task, [{"tool": "drift_report", "arguments": {"model": "other"}}, right[1]], "completed", None)
    assert (wrong_arg.tool_hits, wrong_arg.arg_hits, wrong_arg.success) == (2, 1, False)
    extra = score_task(task, [*right, {"tool": "audit_search", "arguments": {}}], "completed", None)
    assert (extra.tool_hits, extra.tool_total, extra.success) == (2, 3, False)
    assert not score_task(task, right, "stopped", "max_steps").success


async def test_offline_eval_with_the_scripted_planner(make_ws: Callable[..., Workspace], scripted: ScriptedServer) -> None:
    base = make_ws(doc={"project": "eval"})  # no model configured: the eval points the agent at the scripted planner
    # the eval measures planning; the injection classifier (seconds to train) is tested on its own
    base.spec = base.spec.with_overrides({"llm.guardrails.injection.enabled": False})
    ws = Workspace(scripted_spec(base.spec, scripted.url))
    report = await run_eval(ws, execute=False)
    assert report.n_tasks >= 20
    failed = [(t.id, t.actual, t.status) for t in report.tasks if not t.success]
    assert not failed, failed
    assert report.tool_choice_accuracy == report.argument_accuracy == report.task_success == 1.0
    # write tasks stopped at the approval gate, refused roles got no call at all
    assert {t.status for t in report.tasks} == {"completed", "needs_approval"}

    # a model that never finishes scores low on the same tasks
    loop_ws = Workspace(scripted_spec(base.spec, scripted.url, behaviour="looper"))
    loop_ws.spec = loop_ws.spec.with_overrides({"llm.agent.max_steps": 2})
    bad = await run_eval(loop_ws, load_tasks()[:6], execute=False)
    assert bad.task_success < 0.5 and bad.tool_choice_accuracy < 0.5
