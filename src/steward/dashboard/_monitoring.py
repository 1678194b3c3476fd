"""The drift and performance pages: per-feature drift and quality over time, with the moments the monitor or the loop acted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from steward.dashboard._common import ACTION_COLORS, DRIFT_TARGETS, OUTCOME_COLORS, guard, no_monitoring, no_rows
from steward.dashboard.charts import HLine, Marker, line_chart, parse_time
from steward.loop import loop_history
from steward.monitoring import list_actions, list_checks, list_verdicts

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["by_model", "drift_view", "monitoring", "performance_view"]


def monitoring(ws: Workspace, model: str | None, limit: int) -> dict[str, Any]:
    """The newest ``limit`` verdicts (of one model, or all) with their checks, and every recorded action."""
    verdicts = list_verdicts(ws, model, limit=limit)
    checks = list_checks(ws, [v["verdict_id"] for v in verdicts])
    actions = list_actions(ws, model)
    return {"verdicts": verdicts, "checks": checks, "actions": actions}


def _markers(actions: list[dict[str, Any]], loops: list[dict[str, Any]]) -> list[Marker]:
    """The moments the monitor asked for something and the loop acted (started, and how it ended)."""
    out: list[Marker] = []
    for a in actions:
        t = parse_time(a.get("created_at"))
        if t is not None:
            kind = str(a.get("action"))
            out.append(Marker(t, f"{kind}: {a.get('reason', '')} ({a.get('status')})", ACTION_COLORS.get(kind, "#7B2CBF")))
    for run in loops:
        t = parse_time(run.get("started_at"))
        if t is not None:
            out.append(Marker(t, f"loop: started ({run['trigger']})", "#7B2CBF"))
        t = parse_time(run.get("finished_at"))
        if t is not None:
            outcome = str(run.get("outcome") or run.get("state"))
            out.append(Marker(t, f"{outcome}: {run.get('reason') or ''}", OUTCOME_COLORS.get(outcome, "#475467")))
    return out


def _loop_runs(ws: Workspace, model: str) -> list[dict[str, Any]]:
    """The self-healing loop's runs for ``model``, newest first."""
    return [
        {
            "loop_id": r.loop_id,
            "trigger": r.trigger,
            "state": r.state,
            "step": r.step,
            "outcome": r.outcome,
            "reason": r.reason,
            "owner": r.owner,
            "started_at": r.started_at,
            "finished_at": r.finished_at,
            "done": r.done,
            "challenger_version": r.context.get("challenger_version"),
        }
        for r in loop_history(ws, model, limit=20)
    ]


def by_model(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Verdicts (with their checks) and actions grouped by model; ``latest`` is each model's newest verdict."""
    models: dict[str, dict[str, Any]] = {}
    checks_by_verdict: dict[str, list[dict[str, Any]]] = {}
    for c in data["checks"]:
        checks_by_verdict.setdefault(c["verdict_id"], []).append(c)
    for v in data["verdicts"]:
        m = models.setdefault(v["model"], {"model": v["model"], "verdicts": [], "actions": [], "latest": None})
        t = parse_time(v.get("window_end")) or parse_time(v.get("created_at"))
        entry = {**v, "time": t, "checks": checks_by_verdict.get(v["verdict_id"], [])}
        m["verdicts"].append(entry)
        m["latest"] = entry
    for a in data["actions"]:
        models.setdefault(a["model"], {"model": a["model"], "verdicts": [], "actions": [], "latest": None})["actions"].append(a)
    return models


def _policy_charts(
    m: dict[str, Any], keep: Callable[[dict[str, Any]], bool], markers: list[Marker], y_label: Callable[[str], str]
) -> list[dict[str, Any]]:
    """One chart per (policy, detector): a series per column over time, the policy's threshold and warn lines."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for v in m["verdicts"]:
        t = v["time"]
        if t is None:
            continue
        for c in v["checks"]:
            if not keep(c):
                continue
            g = groups.setdefault((c["policy"], c["detector"]), {"series": {}, "threshold": None, "warn": None, "direction": "above"})
            g["threshold"], g["warn"], g["direction"] = c.get("threshold"), c.get("warn"), c.get("direction") or "above"
            if c.get("value") is not None:
                g["series"].setdefault(str(c["column_name"]), []).append((t, float(c["value"])))
    out = []
    for (policy, detector), g in sorted(groups.items()):
        lines = []
        if g["threshold"] is not None:
            lines.append(HLine(float(g["threshold"]), f"{policy} threshold"))
        if g["warn"] is not None:
            lines.append(HLine(float(g["warn"]), "warn", color="#F79009"))
        breach = "below" if g["direction"] == "below" else "at or above"
        out.append(
            {
                "policy": policy,
                "detector": detector,
                "threshold": g["threshold"],
                "warn": g["warn"],
                "direction": g["direction"],
                "caption": f"{detector} per column; breach {breach} {g['threshold']}",
                "columns": sorted(g["series"]),
                "svg": line_chart(
                    g["series"],
                    title=f"{m['model']}: {policy} ({detector})",
                    y_label=y_label(detector),
                    hlines=lines,
                    markers=markers,
                    width=960,
                    height=300,
                ),
            }
        )
    return out


def drift_view(ws: Workspace, *, model: str | None = None, limit: int = 200) -> dict[str, Any]:
    """Drift per feature over time with the policy thresholds, per monitored model.

    Returns:
        ``{"models": [{model, charts: [{policy, detector, svg, ...}], latest: {status, checks}, actions}], "unavailable"}``.
    """
    data, err = guard("monitoring", lambda: monitoring(ws, model, limit), no_monitoring())
    out = []
    for name, m in sorted(by_model(data).items()):
        loop, _ = guard("loop", partial(_loop_runs, ws, name), no_rows())
        markers = _markers(m["actions"], loop)
        charts = _policy_charts(m, lambda c: c["target"] in DRIFT_TARGETS, markers, lambda d: d)
        latest = m["latest"]
        latest_checks = [c for c in (latest["checks"] if latest else []) if c["target"] in DRIFT_TARGETS]
        if not charts and not latest_checks:
            continue
        out.append({"model": name, "charts": charts, "latest": latest, "latest_checks": latest_checks, "actions": m["actions"]})
    return {"models": out, "unavailable": err}


def performance_view(ws: Workspace, *, model: str | None = None, limit: int = 200) -> dict[str, Any]:
    """Quality over labelled windows with the moments the monitor or the loop acted.

    Returns:
        ``{"models": [{model, charts, actions, slo_checks}], "unavailable"}``.
    """
    data, err = guard("monitoring", lambda: monitoring(ws, model, limit), no_monitoring())
    out = []
    for name, m in sorted(by_model(data).items()):
        loop, _ = guard("loop", partial(_loop_runs, ws, name), no_rows())
        markers = _markers(m["actions"], loop)
        charts = _policy_charts(m, lambda c: c["target"] == "performance", markers, lambda d: d)
        if not charts:
            charts = _details_charts(m, markers)
        latest = m["latest"]
        slo_checks = [c for c in (latest["checks"] if latest else []) if c["target"] == "slo"]
        if not charts and not m["actions"] and not slo_checks and not loop:
            continue
        out.append({"model": name, "charts": charts, "actions": list(reversed(m["actions"])), "loops": loop, "slo_checks": slo_checks})
    return {"models": out, "unavailable": err}


def _details_charts(m: dict[str, Any], markers: list[Marker]) -> list[dict[str, Any]]:
    """Without performance policies, chart the metrics recorded with each verdict (overall slice)."""
    series: dict[str, list[tuple[datetime, float]]] = {}
    for v in m["verdicts"]:
        perf = (v.get("details") or {}).get("performance") or {}
        for metric, value in (perf.get("all") or {}).items():
            if metric != "n" and isinstance(value, int | float) and v["time"] is not None:
                series.setdefault(metric, []).append((v["time"], float(value)))
    if not series:
        return []
    return [
        {
            "policy": "recorded metrics",
            "detector": "all",
            "threshold": None,
            "warn": None,
            "direction": "below",
            "caption": "metrics on labelled rows (no performance policy is configured)",
            "columns": sorted(series),
            "svg": line_chart(series, title=f"{m['model']}: quality over time", y_label="metric", markers=markers, width=960, height=300),
        }
    ]
