"""The query functions each table's owning module offers, which the dashboard and the agent's tools read through."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from dashboard_seed import MODEL, NOW, new_project, seed_llm, seed_monitoring, seed_rollout

from steward.llm.gateway import cost_report, daily_spend, spend_per_day
from steward.loop import rollout_state
from steward.monitoring import latest_statuses, list_verdicts
from steward.serving.rollout import RolloutController


def test_each_table_is_read_through_its_owner(tmp_path: Path) -> None:
    ws = new_project(tmp_path / "q")
    assert RolloutController(ws).recent() == [] and latest_statuses(ws) == {} and ws.audit.distinct("actor") == []
    seed_rollout(ws)
    seed_monitoring(ws)
    seed_llm(ws)

    # rollouts (serving.rollout): newest first, with their steps; one by id
    ctl = RolloutController(ws)
    [st] = ctl.recent(5)
    assert (st.model, st.state, [s["action"] for s in st.steps]) == (MODEL, "running", ["start", "advance", "advance", "set_weight"])
    assert ctl.recent(5, with_steps=False)[0].steps == []
    got = ctl.get(st.rollout_id)
    assert got is not None and got.weight == 50.0 and got.steps == []
    assert ctl.get("nope") is None
    assert rollout_state(ctl, st.rollout_id).steps == st.steps  # the loop's reader goes through the owner too

    # monitor verdicts (monitoring): the newest verdict's status per model
    assert latest_statuses(ws) == {MODEL: list_verdicts(ws, MODEL)[-1]["status"]} == {MODEL: "breach"}

    # the audit trail (governance.audit): the filter choices
    assert ws.audit.distinct("actor") == sorted({e.actor for e in ws.audit.entries()})
    assert "rollout.start" in ws.audit.distinct("action") and ws.audit.distinct("model") == [MODEL]
    with pytest.raises(ValueError, match="not a filter column"):
        ws.audit.distinct("payload; DROP TABLE audit_log")

    # LLM usage (llm.gateway): spend per day and key or model, and per day, agreeing with the cost report
    since = (NOW - timedelta(days=4)).strftime("%Y-%m-%d")
    by_key = spend_per_day(ws.metadata, "key_name", since)
    assert {r["name"] for r in by_key} == {"team-search", "agent"} and len({r["day"] for r in by_key}) == 5
    per_day = daily_spend(ws.metadata, since)
    assert [r["day"] for r in per_day] == sorted(r["day"] for r in per_day)
    report = cost_report(ws.metadata, days=5, now=NOW)
    assert sum(r["cost_usd"] for r in per_day) == pytest.approx(report.total_usd)
    assert sum(r["cost_usd"] for r in spend_per_day(ws.metadata, "model", since)) == pytest.approx(report.total_usd)
    with pytest.raises(ValueError, match="cannot group"):
        spend_per_day(ws.metadata, "cost_usd", since)
    ws.close()
