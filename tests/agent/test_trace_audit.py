"""Every step of a run is traced and appended to the audit trail; runs are stored and can be read back."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from steward.llm.agent import Agent, get_run, list_runs
from steward.observability.tracing import flush, recent_traces
from steward.workspace import Workspace

pytestmark = pytest.mark.anyio


async def test_every_step_is_audited_and_traced(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws()
    run = await Agent(ws).run("Show the drift report for model flights_delay, then search the audit trail.", role="viewer", actor="alice")
    assert run.status == "completed"
    assert [c.tool for c in run.calls] == ["drift_report", "audit_search"]
    assert len(run.steps) == 3

    steps = [e for e in ws.audit.entries(action="agent.step") if e.payload["details"]["run_id"] == run.run_id]
    assert [e.payload["details"]["step"] for e in steps] == [1, 2, 3]
    for entry, step in zip(steps, run.steps, strict=True):
        d = entry.payload["details"]
        assert d["tokens"] == step.tokens > 0 and d["latency_ms"] == step.latency_ms and "cost_usd" in d
        assert [c["tool"] for c in d["calls"]] == [c.tool for c in step.calls]
    assert steps[0].payload["details"]["thought"].startswith("Step 1")
    calls = [e for e in ws.audit.entries(action="agent.tool_call") if e.payload["details"]["run_id"] == run.run_id]
    assert [e.subject for e in calls] == ["tool:drift_report", "tool:audit_search"]
    assert all(e.payload["details"]["result_size"] > 0 and "sha256" in e.payload["outputs"]["result"] for e in calls)
    final = ws.audit.entries(action="agent.run")[-1]
    assert final.payload["details"]["status"] == "completed" and final.payload["details"]["tool_calls"] == 2
    assert ws.audit.verify().ok

    flush(ws)
    runs = [s for s in recent_traces(ws, name="agent.run") if s["attributes"].get("agent.run_id") == run.run_id]
    assert len(runs) == 1 and runs[0]["attributes"]["agent.status"] == "completed"
    assert runs[0]["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert runs[0]["attributes"]["gen_ai.agent.id"] == run.run_id
    step_spans = [s for s in recent_traces(ws, name="agent.step") if s["attributes"].get("agent.run_id") == run.run_id]
    assert sorted(s["attributes"]["agent.step"] for s in step_spans) == [1, 2, 3]
    assert all(s["trace_id"] == runs[0]["trace_id"] for s in step_spans)
    chats = [s for s in recent_traces(ws, name="llm.chat") if s["trace_id"] == runs[0]["trace_id"]]
    assert chats and all(c["attributes"]["gen_ai.operation.name"] == "chat" for c in chats)
    assert len(chats) == 3  # the gateway's spans are part of the run's trace

    stored = get_run(ws, run.run_id)
    assert stored["status"] == "completed" and len(stored["steps"]) == 3
    assert list_runs(ws)[0]["run_id"] == run.run_id


async def test_the_gateway_falls_back_for_the_agent(make_ws: Callable[..., Workspace], scripted: object) -> None:
    ws = make_ws()
    gw = ws.spec.llm.gateway
    # nothing listens on port 9 of 127.0.0.1: the first provider fails and the alias falls back to the planner
    dead = gw.providers["scripted"].model_copy(update={"base_url": "http://127.0.0.1:9/v1"})
    ws.spec = ws.spec.with_overrides(
        {"llm.gateway.providers.dead": dead, "llm.gateway.aliases.agent": ["dead:planner", "scripted:planner"]}
    )
    run = await Agent(ws).run("Show the drift report for model flights_delay.", role="viewer")
    assert run.status == "completed" and [c.tool for c in run.calls] == ["drift_report"]
    flush(ws)
    chats = recent_traces(ws, name="llm.chat", limit=5)
    attrs = chats[0]["attributes"]
    assert attrs["llm.provider"] == "scripted" and len(attrs["llm.attempts"]) >= 2, attrs
