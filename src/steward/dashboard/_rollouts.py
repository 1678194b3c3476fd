"""The rollouts page: recent rollouts (running first), each with its steps and per-variant RED charts."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from steward.dashboard._common import ACTION_COLORS, guard, no_rows
from steward.dashboard.charts import HLine, Marker, line_chart, parse_time
from steward.serving.rollout import RolloutController

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["red_charts", "rollouts_view"]


def red_charts(steps: list[dict[str, Any]], policy: dict[str, Any]) -> dict[str, str]:
    """Rate, errors and duration per variant over the recorded steps, plus the challenger's traffic share."""
    rate: dict[str, list[tuple[datetime, float]]] = {}
    errors: dict[str, list[tuple[datetime, float]]] = {}
    p99: dict[str, list[tuple[datetime, float]]] = {}
    weight: dict[str, list[tuple[datetime, float]]] = {"challenger share %": []}
    markers: list[Marker] = []
    for s in steps:
        t = parse_time(s.get("ts"))
        if t is None:
            continue
        weight["challenger share %"].append((t, float(s.get("weight") or 0.0)))
        action = str(s.get("action"))
        if action in ("rollback", "promote", "abort"):
            markers.append(Marker(t, f"{action}: {s.get('reason') or ''}", ACTION_COLORS.get(action, "#7B2CBF")))
        for variant, m in (s.get("metrics") or {}).items():
            if not isinstance(m, dict):
                continue
            label = f"{variant} v{m['version']}" if m.get("version") is not None else str(variant)
            if m.get("requests") is not None:
                rate.setdefault(label, []).append((t, float(m["requests"])))
            if m.get("error_rate") is not None:
                errors.setdefault(label, []).append((t, float(m["error_rate"]) * 100.0))
            if m.get("p99_ms") is not None:
                p99.setdefault(label, []).append((t, float(m["p99_ms"])))
    slo = policy.get("slo") or {}
    err_lines = [HLine(float(slo["max_error_rate"]) * 100.0, "max error rate")] if slo.get("max_error_rate") is not None else []
    p99_lines = [HLine(float(slo["max_p99_ms"]), "max p99")] if slo.get("max_p99_ms") is not None else []

    def small(series: dict[str, list[tuple[datetime, float]]], title: str, y_label: str, lines: list[HLine]) -> str:
        return line_chart(series, title=title, y_label=y_label, hlines=lines, markers=markers, width=440, height=250, y_min=0.0)

    return {
        "rate": small(rate, "Rate: requests per step window", "requests", []),
        "errors": small(errors, "Errors: error rate", "error rate %", err_lines),
        "duration": small(p99, "Duration: p99 latency", "p99 ms", p99_lines),
        "weight": line_chart(
            weight, title="Traffic to the challenger", y_label="%", markers=markers, y_min=0.0, y_max=100.0, width=960, height=200
        ),
    }


def _rollouts(ws: Workspace, limit: int) -> list[dict[str, Any]]:
    return [
        {
            "rollout_id": st.rollout_id,
            "model": st.model,
            "mode": st.mode,
            "state": st.state,
            "champion_version": st.champion_version,
            "challenger_version": st.challenger_version,
            "step_index": st.step_index,
            "weight": st.weight,
            "reason": st.reason,
            "actor": st.actor,
            "started_at": st.started_at,
            "updated_at": st.updated_at,
            "finished_at": st.finished_at,
            "policy": st.policy,
            "steps": st.steps,
            "charts": red_charts(st.steps, st.policy),
        }
        for st in RolloutController(ws).recent(limit)
    ]


def rollouts_view(ws: Workspace, *, limit: int = 10) -> dict[str, Any]:
    """Recent rollouts (running first), each with its steps and per-variant RED charts."""
    rollouts, err = guard("serving", lambda: _rollouts(ws, limit), no_rows())
    rollouts.sort(key=lambda r: r["state"] != "running")  # stable: running first, then newest first
    return {"rollouts": rollouts, "active": [r for r in rollouts if r["state"] == "running"], "unavailable": err}
