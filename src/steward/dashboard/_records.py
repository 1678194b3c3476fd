"""The audit, LLM spend and traces pages: what was done, what it cost, where the time went."""

from __future__ import annotations

import calendar
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from steward.dashboard._common import clip, guard, no_rows
from steward.dashboard.charts import HLine, bar_chart, line_chart
from steward.llm.gateway import cost_report, daily_spend, spend_per_day
from steward.observability.tracing import recent_traces

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["audit_view", "llm_view", "traces_view"]


def audit_view(
    ws: Workspace, *, model: str | None = None, action: str | None = None, actor: str | None = None, limit: int = 200
) -> dict[str, Any]:
    """Audit entries, newest first, filtered; with the chain's verification and the filter choices.

    Args:
        model: Only entries of this model.
        action: Only actions starting with this prefix (``rollout``, ``registry.alias``).
        actor: Only entries by this actor (exact).
        limit: Most entries shown.
    """

    def read() -> dict[str, Any]:
        entries = ws.audit.entries(model=model or None, action=action or None)
        if actor:
            entries = [e for e in entries if e.actor == actor]
        shown = list(reversed(entries))[:limit]
        rows = [
            {
                "seq": e.seq,
                "ts": e.ts,
                "actor": e.actor,
                "action": e.action,
                "subject": e.subject,
                "model": e.model,
                "details": clip(json.dumps(e.payload.get("details", {}), sort_keys=True, default=str), 300),
                "hash": e.hash,
            }
            for e in shown
        ]
        v = ws.audit.verify()
        return {
            "entries": rows,
            "matched": len(entries),
            "verification": {"ok": v.ok, "entries": v.entries, "first_bad_seq": v.first_bad_seq, "problem": v.problem},
            "choices": {col: ws.audit.distinct(col) for col in ("model", "action", "actor")},
        }

    empty: dict[str, Any] = {"entries": [], "matched": 0, "verification": None, "choices": {"model": [], "action": [], "actor": []}}
    data, err = guard("audit", read, empty)
    return {**data, "filters": {"model": model or "", "action": action or "", "actor": actor or ""}, "unavailable": err}


def _per_day(ws: Workspace, column: str, since: str) -> tuple[list[str], dict[str, list[float]]]:
    rows = spend_per_day(ws.metadata, column, since)
    days = sorted({r["day"] for r in rows})
    names = sorted({r["name"] for r in rows})
    stacks = {n: [0.0] * len(days) for n in names}
    index = {d: i for i, d in enumerate(days)}
    for r in rows:
        stacks[r["name"]][index[r["day"]]] += r["cost_usd"]
    return days, stacks


def _projection_chart(ws: Workspace, now: datetime, projected: float, budgets: dict[str, float]) -> str:
    """Cumulative spend this month, and the straight line to the month's projection."""
    total, spent = 0.0, []
    for r in daily_spend(ws.metadata, now.strftime("%Y-%m-01")):
        total += r["cost_usd"]
        day_end = datetime.fromisoformat(r["day"]).replace(hour=23, minute=59, tzinfo=UTC)
        spent.append((day_end, total))
    if not spent:
        return line_chart({}, title="Spend this month")
    last_day = calendar.monthrange(now.year, now.month)[1]
    month_end = now.replace(day=last_day, hour=23, minute=59, second=0, microsecond=0)
    series = {"spend to date": spent, "projection": [spent[-1], (month_end, projected)]}
    lines = [HLine(sum(budgets.values()), "sum of monthly key budgets")] if budgets else []
    return line_chart(
        series,
        title="Spend this month and projection",
        y_label="USD",
        hlines=lines,
        y_min=0.0,
        width=960,
        height=240,
        dashed={"projection"},
    )


def _key_budgets(ws: Workspace) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, key in ws.spec.llm.gateway.keys.items():
        if key.budget is not None and key.budget.usd is not None and key.budget.period == "month":
            out[name] = float(key.budget.usd)
    return out


def llm_view(ws: Workspace, *, days: int = 30, now: datetime | None = None) -> dict[str, Any]:
    """LLM spend by key and model per day over ``days`` days, and the month's projection."""
    now = now or datetime.now(UTC)

    def read() -> dict[str, Any]:
        report = cost_report(ws.metadata, days=days, now=now).to_dict()
        key_days, by_key = _per_day(ws, "key_name", report["since"])
        model_days, by_model = _per_day(ws, "model", report["since"])
        budgets, _ = guard("budgets", lambda: _key_budgets(ws), dict[str, float]())
        for row in report["by_key"]:
            row["budget_usd"] = budgets.get(str(row["name"]))
        return {
            "report": report,
            "charts": {
                "by_key": bar_chart(key_days, by_key, title="Spend per day by key", y_label="USD", width=640),
                "by_model": bar_chart(model_days, by_model, title="Spend per day by model", y_label="USD", width=640),
                "projection": _projection_chart(ws, now, float(report["projected_month_usd"]), budgets),
            },
        }

    data, err = guard("LLM gateway", read, {"report": None, "charts": dict[str, str]()})
    return {**data, "month": now.strftime("%B %Y"), "unavailable": err}


def traces_view(ws: Workspace, *, limit: int = 50, name: str | None = None) -> dict[str, Any]:
    """The most recent spans (newest first) with their main attributes."""

    def read() -> list[dict[str, Any]]:
        spans = recent_traces(ws, limit, name=name or None)
        for s in spans:
            s["started"] = datetime.fromtimestamp(int(s["start_ns"]) / 1e9, UTC)
            s["short_trace"] = str(s["trace_id"])[:12]
        # newest trace first, and within a trace in start order, so a parent span precedes its children
        first_seen: dict[str, int] = {}
        for i, s in enumerate(spans):
            first_seen.setdefault(str(s["trace_id"]), i)
        return sorted(spans, key=lambda s: (first_seen[str(s["trace_id"])], int(s["start_ns"])))

    spans, err = guard("tracing", read, no_rows())
    longest = max((float(s["duration_ms"]) for s in spans), default=0.0)
    return {"spans": spans, "longest_ms": longest, "name": name or "", "unavailable": err}
