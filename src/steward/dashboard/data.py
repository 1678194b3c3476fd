"""What the dashboard shows, read from the stage libraries (a library module: no HTTP here).

Every function takes a :class:`~steward.workspace.Workspace` and returns plain data for the
templates, reading each table through its owning module's query functions (never its SQL).
Every section degrades to an empty result (with ``unavailable`` naming why, when something
failed) instead of raising: a project that has not trained, served or monitored anything yet
still gets every page, each with an "empty state". One module per page group: models
(:mod:`._models`), rollouts (:mod:`._rollouts`), drift and performance (:mod:`._monitoring`),
audit, LLM spend and traces (:mod:`._records`); the overview is here.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from steward.dashboard._common import guard, no_monitoring
from steward.dashboard._models import model_detail, models_view
from steward.dashboard._monitoring import by_model, drift_view, monitoring, performance_view
from steward.dashboard._records import audit_view, llm_view, traces_view
from steward.dashboard._rollouts import rollouts_view

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = [
    "audit_view",
    "drift_view",
    "llm_view",
    "model_detail",
    "models_view",
    "overview",
    "performance_view",
    "rollouts_view",
    "traces_view",
]


def overview(ws: Workspace, *, now: datetime | None = None) -> dict[str, Any]:
    """The front page: models with champion and challenger, running rollouts, latest drift status, spend this month."""
    models = models_view(ws)
    rollouts = rollouts_view(ws, limit=20)
    mon, mon_err = guard("monitoring", lambda: monitoring(ws, None, 500), no_monitoring())
    status = []
    for name, m in sorted(by_model(mon).items()):
        latest = m["latest"]
        if latest is None:
            continue
        breaches = [c for c in latest["checks"] if c["status"] == "breach"]
        status.append(
            {
                "model": name,
                "status": latest["status"],
                "window_end": latest.get("window_end") or latest.get("created_at"),
                "n_rows": latest.get("n_rows"),
                "breaches": [f"{c['column_name']} {c['detector']}" for c in breaches][:6],
                "open_actions": [a for a in m["actions"] if a.get("status") in ("pending", "running")],
            }
        )
    llm = llm_view(ws, days=31, now=now)
    audit, audit_err = guard("audit", lambda: ws.audit.verify(), None)
    return {
        "models": models,
        "rollouts": rollouts,
        "monitoring": {"models": status, "unavailable": mon_err},
        "llm": llm,
        "audit": None if audit is None else {"ok": audit.ok, "entries": audit.entries, "problem": audit.problem},
        "audit_unavailable": audit_err,
    }
