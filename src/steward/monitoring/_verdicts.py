"""Monitoring verdicts: what one pass found, stored in the metadata store and read back.

A :class:`MonitorVerdict` goes to ``monitor_verdicts`` with its checks (``monitor_checks``)
and its actions (``monitor_actions``) in one transaction; the loop marks what became of
each action (:func:`mark_action`). This module is the only one that reads or writes
those tables.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from steward._primitives import utcnow
from steward.errors import NotFound
from steward.monitoring._rules import PolicyAction, PolicyCheck

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = [
    "MonitorVerdict",
    "latest_statuses",
    "list_actions",
    "list_checks",
    "list_verdicts",
    "mark_action",
    "record_verdict",
]

logger = logging.getLogger(__name__)


@dataclass
class MonitorVerdict:
    """The result of one monitoring pass over one model.

    Attributes:
        actions: What to do (one per breached policy).
        checks: Every statistic with its thresholds and status.
        status: Worst check status (``ok`` < ``warn`` < ``breach``).
        details: Distributions (reference vs window), performance, label counts (``labels_loaded``:
            label rows collected for the window, ``labelled_rows``: predictions that found one) and
            SLO statuses, for reports.
    """

    verdict_id: str
    model: str
    version: str | None
    window_start: datetime | None
    window_end: datetime | None
    n_rows: int
    actions: list[PolicyAction]
    checks: list[PolicyCheck]
    status: str
    created_at: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "verdict_id": self.verdict_id,
            "model": self.model,
            "version": self.version,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "n_rows": self.n_rows,
            "status": self.status,
            "created_at": self.created_at,
            "actions": [a.to_dict() for a in self.actions],
            "checks": [c.to_dict() for c in self.checks],
            "details": self.details,
        }


def _json(data: Any) -> str:
    return json.dumps(data, default=_default, allow_nan=False)


def _default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.isoformat()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def record_verdict(ws: Workspace, verdict: MonitorVerdict) -> None:
    """Append a verdict, its checks and its actions to the metadata store (one transaction)."""
    md = ws.metadata
    ws_, we = verdict.window_start, verdict.window_end
    with md.transaction():
        md.execute(
            "INSERT INTO monitor_verdicts (verdict_id, model, version, window_start, window_end, n_rows, status, created_at, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (verdict.verdict_id, verdict.model, verdict.version, ws_.isoformat() if ws_ else None, we.isoformat() if we else None,
             verdict.n_rows, verdict.status, verdict.created_at, _json(verdict.details)),
        )  # fmt: skip
        for i, c in enumerate(verdict.checks):
            md.execute(
                "INSERT INTO monitor_checks (verdict_id, seq, policy, target, detector, column_name, value, statistic, threshold, warn, "
                "direction, status, n_reference, n_window) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (verdict.verdict_id, i, c.policy, c.on, c.detector, c.column, c.value, c.statistic, c.threshold, c.warn, c.direction,
                 c.status, c.n_reference, c.n_window),
            )  # fmt: skip
        for a in verdict.actions:
            md.execute(
                "INSERT INTO monitor_actions (action_id, verdict_id, model, version, policy, action, reason, status, created_at, updated_at, details) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (a.action_id, verdict.verdict_id, a.model, a.version, a.policy, a.action, a.reason,
                 "sent" if a.action == "alert" else "pending", verdict.created_at, verdict.created_at,
                 _json({"columns": list(a.columns), "runbook": a.runbook})),
            )  # fmt: skip


def list_verdicts(ws: Workspace, model: str | None = None, *, limit: int = 200) -> list[dict[str, Any]]:
    """Recorded verdicts, oldest first (``details`` decoded)."""
    where, params = ("WHERE model = ?", (model,)) if model else ("", ())
    rows = ws.metadata.fetchall(
        f"SELECT * FROM (SELECT * FROM monitor_verdicts {where} ORDER BY created_at DESC LIMIT {int(limit)}) v ORDER BY created_at", params
    )
    for r in rows:
        r["details"] = json.loads(r.get("details") or "{}")
    return rows


def latest_statuses(ws: Workspace) -> dict[str, str]:
    """The status of each model's newest verdict (``ok``, ``warn``, ``breach``...), by model name."""
    rows = ws.metadata.fetchall(
        "SELECT v.model, v.status FROM monitor_verdicts v "
        "JOIN (SELECT model, MAX(created_at) AS c FROM monitor_verdicts GROUP BY model) m ON v.model = m.model AND v.created_at = m.c"
    )
    return {str(r["model"]): str(r["status"]) for r in rows}


def list_checks(ws: Workspace, verdict_ids: list[str]) -> list[dict[str, Any]]:
    """Checks of the given verdicts."""
    if not verdict_ids:
        return []
    marks = ", ".join("?" for _ in verdict_ids)
    return ws.metadata.fetchall(f"SELECT * FROM monitor_checks WHERE verdict_id IN ({marks}) ORDER BY verdict_id, seq", verdict_ids)


def list_actions(ws: Workspace, model: str | None = None) -> list[dict[str, Any]]:
    """Recorded actions (the moments the monitor or the loop acted), oldest first."""
    where, params = ("WHERE model = ?", (model,)) if model else ("", ())
    rows = ws.metadata.fetchall(f"SELECT * FROM monitor_actions {where} ORDER BY created_at", params)
    for r in rows:
        r["details"] = json.loads(r.get("details") or "{}")
    return rows


def mark_action(ws: Workspace, action_id: str, status: str, *, note: str | None = None) -> None:
    """Record what became of an action (for the loop: ``running``, ``done``, ``failed``, ``skipped``).

    Raises:
        NotFound: no such action.
    """
    row = ws.metadata.fetchone("SELECT details FROM monitor_actions WHERE action_id = ?", (action_id,))
    if row is None:
        raise NotFound(f"no monitor action {action_id}", hint="list them with steward.monitoring.list_actions")
    details = json.loads(row.get("details") or "{}")
    if note:
        details.setdefault("notes", []).append({"at": utcnow(), "status": status, "note": note})
    ws.metadata.execute(
        "UPDATE monitor_actions SET status = ?, updated_at = ?, details = ? WHERE action_id = ?",
        (status, utcnow(), _json(details), action_id),
    )
