"""Reports people look at: one self-contained HTML file (inline PNG plots) and a JSON twin for machines.

Everything comes from the metadata store's verdict, check and action records, so a
report can be rebuilt at any time without touching the lake: distribution overlays
(reference vs latest window), drift per column over time, and quality over time with
the moments the monitor acted (its actions) and the loop acted (its runs' outcomes) drawn as
vertical lines. The loop sits above monitoring, so its runs come in as an argument
(``loop_runs=steward.loop.loop_history(...)``; :func:`steward.ops.monitor_report` passes them).
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from steward._primitives import to_utc, utcnow
from steward.monitoring._verdicts import list_actions, list_checks, list_verdicts

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from steward.workspace import Workspace

__all__ = ["LoopRunView", "ReportPaths", "build_report", "report_data"]

logger = logging.getLogger(__name__)

_ACTION_COLORS = {"alert": "#d62728", "retrain": "#1f77b4", "rollback": "#9467bd", "shadow-then-promote": "#2ca02c"}
_OUTCOME_COLORS = {"promoted": "#17becf", "rolled_back": "#e377c2", "champion_kept": "#7f7f7f", "aborted": "#8c564b"}


@dataclass(frozen=True)
class ReportPaths:
    """Where a report was written."""

    html: Path
    json: Path


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return to_utc(text)
    except ValueError:
        return None


class LoopRunView(Protocol):
    """What the report reads of one self-healing loop run (:class:`steward.loop.LoopRun` has it)."""

    loop_id: str
    model: str
    trigger: str
    state: str
    context: dict[str, Any]
    started_at: str
    finished_at: str | None
    outcome: str | None
    reason: str | None


def _loop_runs(loop_runs: Iterable[LoopRunView], model: str | None) -> list[dict[str, Any]]:
    """The self-healing loop's runs as report rows, oldest first (``loop_runs`` come newest first)."""
    runs = [
        {
            "loop_id": r.loop_id,
            "model": r.model,
            "trigger": r.trigger,
            "state": r.state,
            "outcome": r.outcome,
            "reason": r.reason,
            "started_at": r.started_at,
            "finished_at": r.finished_at,
            "challenger_version": r.context.get("challenger_version"),
        }
        for r in loop_runs
        if model is None or r.model == model
    ]
    return list(reversed(runs))


def _markers(actions: list[dict[str, Any]], loops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The moments the monitor asked for something and the loop's runs ended (promoted, rolled back, champion kept)."""
    out = [
        {"at": a["created_at"], "source": "monitor", "kind": str(a.get("action")), "label": f"{a.get('action')}: {a.get('reason') or ''}"}
        for a in actions
        if a.get("created_at")
    ]
    for run in loops:
        if run.get("finished_at") and run.get("outcome"):
            label = f"loop {run['outcome']}: {run.get('reason') or ''}"
            out.append({"at": run["finished_at"], "source": "loop", "kind": str(run["outcome"]), "label": label})
    out.sort(key=lambda mk: _parse_time(mk["at"]) or datetime.min.replace(tzinfo=UTC))
    return out


def report_data(ws: Workspace, *, model: str | None = None, limit: int = 200, loop_runs: Iterable[LoopRunView] = ()) -> dict[str, Any]:
    """The machine-readable report: per model, the latest verdict, the history of checks, the actions and loop runs.

    Args:
        ws: The workspace.
        model: Only this model (default: every monitored model).
        limit: Most recent verdicts per report.
        loop_runs: The self-healing loop's runs, newest first (``steward.loop.loop_history(ws, model, limit=limit)``);
            none: the report has no loop section and no loop markers.

    ``markers`` lists, per model, the moments to draw on the plots: the monitor's actions
    (``source: monitor``) and the loop's outcomes (``source: loop``: ``promoted``,
    ``rolled_back``, ``champion_kept`` or ``aborted``).
    """
    verdicts = list_verdicts(ws, model, limit=limit)
    checks = list_checks(ws, [v["verdict_id"] for v in verdicts])
    by_verdict: dict[str, list[dict[str, Any]]] = {}
    for c in checks:
        by_verdict.setdefault(c["verdict_id"], []).append(c)
    models: dict[str, dict[str, Any]] = {}

    def slot(name: str) -> dict[str, Any]:
        return models.setdefault(name, {"history": [], "actions": [], "loops": [], "markers": [], "latest": None})

    for v in verdicts:
        m = slot(v["model"])
        entry = {k: v[k] for k in ("verdict_id", "version", "window_start", "window_end", "n_rows", "status", "created_at")}
        entry["checks"] = [{k: c[k] for k in c if k not in ("verdict_id",)} for c in by_verdict.get(v["verdict_id"], [])]
        m["history"].append(entry)
        m["latest"] = {**entry, "details": v["details"]}
    for a in list_actions(ws, model):
        slot(a["model"])["actions"].append(a)
    for run in _loop_runs(loop_runs, model):
        slot(run["model"])["loops"].append(run)
    for m in models.values():
        m["markers"] = _markers(m["actions"], m["loops"])
    return {"generated_at": utcnow(), "project": ws.spec.project, "models": models}


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(w: float = 6.0, h: float = 2.8) -> Figure:
    # Figure without pyplot: no global backend state, safe in servers and threads
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h))


def _overlay(name: str, dist: dict[str, Any]) -> str:
    fig = _figure(4.2, 2.6)
    ax = fig.add_subplot()
    ref = np.asarray(dist["reference"], dtype=float)
    cur = np.asarray(dist["window"], dtype=float)
    rp = ref / ref.sum() if ref.sum() else ref
    cp = cur / cur.sum() if cur.sum() else cur
    if dist["kind"] == "numeric":
        cuts = dist["cuts"]
        labels = [f"<{cuts[0]:.3g}"] + [f"{a:.3g}–{b:.3g}" for a, b in itertools.pairwise(cuts)] + [f"≥{cuts[-1]:.3g}"] if cuts else ["all"]
    else:
        labels = [str(c)[:12] for c in dist["categories"]]
    x = np.arange(len(labels))
    ax.bar(x - 0.2, rp, width=0.4, label="reference", color="#7f7f7f")
    ax.bar(x + 0.2, cp, width=0.4, label="window", color="#ff7f0e")
    ax.set_xticks(x, labels, rotation=60, fontsize=6, ha="right")
    ax.set_title(name, fontsize=9)
    ax.set_ylabel("share", fontsize=7)
    ax.legend(fontsize=6)
    return _png(fig)


def _vlines(ax: Any, markers: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for mk in markers:
        t = _parse_time(mk.get("at"))
        if t is None:
            continue
        kind, source = str(mk.get("kind")), mk.get("source")
        label = f"action: {kind}" if source == "monitor" else f"loop: {kind}"
        # the monitor asked (dashed); the loop acted (solid)
        color = _ACTION_COLORS.get(kind, "#000000") if source == "monitor" else _OUTCOME_COLORS.get(kind, "#000000")
        ax.axvline(t, color=color, linestyle="--" if source == "monitor" else "-", linewidth=1, label=None if label in seen else label)
        seen.add(label)


def _series_plot(title: str, series: dict[str, list[tuple[datetime, float]]], markers: list[dict[str, Any]], ylabel: str) -> str:
    fig = _figure(7.5, 3.0)
    ax = fig.add_subplot()
    for name, pts in sorted(series.items()):
        if pts:
            xs, ys = zip(*sorted(pts), strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, linewidth=1, label=name)
    _vlines(ax, markers)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    fig.autofmt_xdate()
    if series or markers:
        ax.legend(fontsize=6, ncol=3)
    return _png(fig)


def _esc(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape("" if v is None else str(v))


def _model_section(name: str, m: dict[str, Any]) -> str:
    parts = [f"<h2>Model {_esc(name)}</h2>"]
    latest = m.get("latest")
    actions = m.get("actions", [])
    markers = m.get("markers", [])
    # drift per column over time, and quality over time, each with the moments actions were taken
    drift: dict[str, list[tuple[datetime, float]]] = {}
    quality: dict[str, list[tuple[datetime, float]]] = {}
    for h in m.get("history", []):
        t = _parse_time(h.get("window_end")) or _parse_time(h.get("created_at"))
        if t is None:
            continue
        for c in h["checks"]:
            if c.get("value") is None:
                continue
            if c["target"] in ("features", "prediction", "target") and c["direction"] == "above":
                # distances only: p-values live on another scale and are listed in the checks table
                drift.setdefault(f"{c['column_name']} {c['detector']}", []).append((t, float(c["value"])))
            elif c["target"] == "performance":
                quality.setdefault(f"{c['detector']} [{c['column_name']}]", []).append((t, float(c["value"])))
    parts.append('<div class="row">')
    parts.append(f'<img alt="drift over time" src="{_series_plot("Drift per column over time", drift, markers, "statistic")}">')
    parts.append(
        f'<img alt="performance over time" src="{_series_plot("Quality over time (labelled windows)", quality, markers, "metric")}">'
    )
    parts.append("</div>")
    if latest:
        parts.append(
            f"<p>Latest window {_esc(latest.get('window_start'))} → {_esc(latest.get('window_end'))}, "
            f"version {_esc(latest.get('version'))}, {_esc(latest.get('n_rows'))} rows, status "
            f'<b class="{_esc(latest.get("status"))}">{_esc(latest.get("status"))}</b></p>'
        )
        dists = latest.get("details", {}).get("distributions", {})
        if dists:
            parts.append('<h3>Distributions: reference vs latest window</h3><div class="grid">')
            for col, d in dists.items():
                parts.append(f'<img alt="distribution {_esc(col)}" src="{_overlay(col, d)}">')
            parts.append("</div>")
        parts.append("<h3>Checks of the latest window</h3><table><tr><th>policy</th><th>on</th><th>column</th><th>detector</th>"
                     "<th>value</th><th>threshold</th><th>warn</th><th>status</th><th>n window</th></tr>")  # fmt: skip
        for c in latest.get("checks", []):
            parts.append(
                f"<tr><td>{_esc(c['policy'])}</td><td>{_esc(c['target'])}</td><td>{_esc(c['column_name'])}</td><td>{_esc(c['detector'])}</td>"
                f"<td>{_esc(c['value'])}</td><td>{_esc(c['threshold'])}</td><td>{_esc(c['warn'])}</td>"
                f'<td class="{_esc(c["status"])}">{_esc(c["status"])}</td><td>{_esc(c["n_window"])}</td></tr>'
            )
        parts.append("</table>")
        slos = latest.get("details", {}).get("slos", [])
        if slos:
            parts.append(
                "<h3>SLOs</h3><table><tr><th>SLO</th><th>objective</th><th>SLI</th><th>budget left</th><th>burn rates</th><th>firing</th></tr>"
            )
            for s in slos:
                rates = ", ".join(f"{w}: {_esc(r)}" for w, r in s.get("burn_rates", {}).items())
                parts.append(
                    f"<tr><td>{_esc(s['name'])}</td><td>{_esc(s['objective'])}</td><td>{_esc(s['sli'])}</td>"
                    f"<td>{_esc(s['error_budget_remaining'])}</td><td>{rates}</td><td>{_esc(', '.join(s.get('firing', [])))}</td></tr>"
                )
            parts.append("</table>")
    if actions:
        parts.append(
            "<h3>Actions</h3><table><tr><th>when</th><th>policy</th><th>action</th><th>status</th><th>reason</th><th>runbook</th></tr>"
        )
        for a in actions:
            rb = a.get("details", {}).get("runbook")
            link = f'<a href="{_esc(rb)}">{_esc(rb)}</a>' if rb else ""
            parts.append(
                f"<tr><td>{_esc(a['created_at'])}</td><td>{_esc(a['policy'])}</td><td>{_esc(a['action'])}</td>"
                f"<td>{_esc(a['status'])}</td><td>{_esc(a['reason'])}</td><td>{link}</td></tr>"
            )
        parts.append("</table>")
    loops = [r for r in m.get("loops", []) if r.get("finished_at")]
    if loops:
        parts.append(
            "<h3>Loop runs</h3><table><tr><th>finished</th><th>trigger</th><th>outcome</th><th>challenger</th><th>reason</th></tr>"
        )
        for r in loops:
            parts.append(
                f"<tr><td>{_esc(r['finished_at'])}</td><td>{_esc(r['trigger'])}</td><td>{_esc(r['outcome'])}</td>"
                f"<td>{_esc(r.get('challenger_version'))}</td><td>{_esc(r.get('reason'))}</td></tr>"
            )
        parts.append("</table>")
    return "\n".join(parts)


_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;font-size:12px;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px}.breach{color:#b00;font-weight:bold}.warn{color:#b60}.ok{color:#070}
.grid{display:flex;flex-wrap:wrap;gap:6px}.row{display:flex;flex-wrap:wrap;gap:6px}img{max-width:100%}"""


def build_report(
    ws: Workspace, out_dir: str | Path, *, model: str | None = None, limit: int = 200, loop_runs: Iterable[LoopRunView] = ()
) -> ReportPaths:
    """Write ``monitor-report.html`` (self-contained: plots inlined as base64 PNG) and ``monitor-report.json``.

    Args:
        ws: The workspace.
        out_dir: Directory to write into (created if missing).
        model: Only this model (default: every monitored model).
        limit: Most recent verdicts per report.
        loop_runs: The self-healing loop's runs, newest first (see :func:`report_data`).
    """
    data = report_data(ws, model=model, limit=limit, loop_runs=loop_runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "monitor-report.json"
    json_path.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    sections = [_model_section(name, m) for name, m in sorted(data["models"].items())] or [
        "<p>No monitoring verdicts yet: run 'steward monitor run'.</p>"
    ]
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><title>Steward monitoring report</title>'
        f"<style>{_CSS}</style></head><body><h1>Monitoring report: {_esc(ws.spec.project)}</h1>"
        f"<p>Generated {_esc(data['generated_at'])}.</p>" + "\n".join(sections) + "</body></html>"
    )
    html_path = out / "monitor-report.html"
    html_path.write_text(page, encoding="utf-8")
    return ReportPaths(html_path, json_path)
