"""What the dashboard shows, read from the stage libraries (a library module: no HTTP here).

Every function takes a :class:`~steward.workspace.Workspace` and returns plain
data for the templates. Stage modules are imported lazily, and every section
degrades to an empty result (with ``unavailable`` naming why, when something
failed) instead of raising: a project that has not trained, served or
monitored anything yet still gets every page, each with an "empty state".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from steward.dashboard.charts import HLine, Marker, bar_chart, line_chart, parse_time
from steward.errors import NotFound, StewardError

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

logger = logging.getLogger(__name__)

T = TypeVar("T")

ACTION_COLORS = {
    "alert": "#DC6803",
    "retrain": "#7B2CBF",
    "rollback": "#C11574",
    "shadow-then-promote": "#079455",
    "promote": "#079455",
    "abort": "#475467",
}
OUTCOME_COLORS = {"promoted": "#079455", "rolled_back": "#C11574", "champion_kept": "#475467", "aborted": "#475467"}
DRIFT_TARGETS = ("features", "prediction", "target")


def _rows() -> list[dict[str, Any]]:
    return []


def _no_monitoring() -> dict[str, Any]:
    return {"verdicts": [], "checks": [], "actions": []}


def _guard(section: str, fn: Callable[[], T], empty: T) -> tuple[T, str | None]:
    """Run ``fn``; on any failure log it and return ``empty`` with a one-line reason (never a 500)."""
    try:
        return fn(), None
    except ImportError as exc:
        logger.info("dashboard %s: stage not installed (%s)", section, exc)
        return empty, f"the {section} stage is not available ({exc.name or exc})"
    except Exception as exc:
        if isinstance(exc, StewardError):  # an expected condition (no card yet, ...): its message says it all
            logger.info("dashboard %s: %s", section, exc)
            return empty, str(exc)
        logger.exception("dashboard %s failed", section)
        return empty, f"{section} could not be read: {type(exc).__name__}: {exc}"


# -- registry ------------------------------------------------------------------------------------


def _registered(ws: Workspace, name: str | None = None) -> list[dict[str, Any]]:
    # a local SQLite registry is never created just to show a page
    if not ws.model_registry.exists():
        return []
    from steward.registry import list_models

    try:
        return [v.to_dict() for v in list_models(ws, name)]
    except NotFound:  # no such registered model: an empty answer, not a failure
        if name:
            return []
        raise


def _group_models(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    models: dict[str, dict[str, Any]] = {}
    for v in versions:
        m = models.setdefault(v["name"], {"name": v["name"], "versions": [], "aliases": {}})
        m["versions"].append(v)
        for alias in v["aliases"]:
            m["aliases"][alias] = v["version"]
    for m in models.values():
        m["versions"].sort(key=lambda v: -int(v["version"]))
        m["latest"] = m["versions"][0] if m["versions"] else None
        m["champion"] = m["aliases"].get("champion")
        m["challenger"] = m["aliases"].get("challenger")
        m["previous"] = m["aliases"].get("previous")
    return sorted(models.values(), key=lambda m: str(m["name"]))


def models_view(ws: Workspace) -> dict[str, Any]:
    """Every registered model with its versions and aliases.

    Returns:
        ``{"models": [{name, versions, aliases, champion, challenger, previous, latest}], "unavailable": str | None}``.
    """
    versions, err = _guard("registry", lambda: _registered(ws), _rows())
    return {"models": _group_models(versions), "unavailable": err}


def _render_markdown(text: str) -> str:
    """Markdown → HTML with raw HTML disabled (the card's text cannot inject markup)."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # pragma: no cover - markdown-it-py comes with rich
        import html

        return f"<pre>{html.escape(text)}</pre>"
    return str(MarkdownIt("commonmark", {"html": False}).enable("table").render(text))


def model_detail(ws: Workspace, name: str, version: int | None = None) -> dict[str, Any] | None:
    """One model: versions, aliases, alias history and the model card of ``version``.

    Args:
        ws: The workspace.
        name: Registered model name.
        version: The version whose card to show (default: the champion, else the newest).

    Returns:
        None when the model is not registered; else ``{name, versions, aliases, champion, challenger,
        selected, card_html, card, card_missing, history, gate, unavailable}``.
    """
    versions, err = _guard("registry", lambda: _registered(ws, name), _rows())
    if err is None and not versions:
        return None
    grouped = _group_models(versions)
    m = grouped[0] if grouped else {"name": name, "versions": [], "aliases": {}, "champion": None, "challenger": None, "previous": None}
    known = {int(v["version"]) for v in m["versions"]}
    selected = version if version in known else m.get("champion") or (m["versions"][0]["version"] if m["versions"] else None)
    out: dict[str, Any] = {**m, "selected": selected, "card_html": None, "card": None, "card_missing": None, "unavailable": err}
    if selected is not None:

        def card() -> tuple[str, dict[str, Any]]:
            from steward.training.cards import read_card

            return read_card(ws, name, int(selected))

        result, card_err = _guard("model card", card, None)
        if result is not None:
            out["card_html"] = _render_markdown(result[0])
            out["card"] = result[1]
        else:
            out["card_missing"] = card_err
        out["gate"], _ = _guard("gate", lambda: _gate(ws, name, int(selected)), None)
    out["history"], _ = _guard("alias history", lambda: _alias_history(ws, name), _rows())
    return out


def _gate(ws: Workspace, name: str, version: int) -> dict[str, Any] | None:
    from steward.registry import latest_gate_verdict

    return latest_gate_verdict(ws, name, version)


def _alias_history(ws: Workspace, name: str) -> list[dict[str, Any]]:
    from steward.registry import alias_history

    return [c.to_dict() for c in reversed(alias_history(ws, name))]


# -- rollouts ------------------------------------------------------------------------------------


def _noop_promote(*_args: Any, **_kwargs: Any) -> None:  # the dashboard only reads
    raise RuntimeError("the dashboard never promotes")


def _red_charts(steps: list[dict[str, Any]], policy: dict[str, Any]) -> dict[str, str]:
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
    from steward.serving.rollout import RolloutController

    ctl = RolloutController(ws, promote=_noop_promote)
    rows = ctl.store.fetchall(f"SELECT * FROM rollouts ORDER BY started_at DESC LIMIT {int(limit)}")
    out = []
    for r in rows:
        steps = ctl.steps(r["rollout_id"])
        policy = json.loads(r.get("policy") or "{}")
        out.append(
            {
                "rollout_id": r["rollout_id"],
                "model": r["model_name"],
                "mode": r["mode"],
                "state": r["state"],
                "champion_version": r["champion_version"],
                "challenger_version": r["challenger_version"],
                "step_index": int(r["step_index"]),
                "weight": float(r["weight"]),
                "reason": r["reason"],
                "actor": r["actor"],
                "started_at": r["started_at"],
                "updated_at": r["updated_at"],
                "finished_at": r["finished_at"],
                "policy": policy,
                "steps": steps,
                "charts": _red_charts(steps, policy),
            }
        )
    return out


def rollouts_view(ws: Workspace, *, limit: int = 10) -> dict[str, Any]:
    """Recent rollouts (running first), each with its steps and per-variant RED charts."""
    rollouts, err = _guard("serving", lambda: _rollouts(ws, limit), _rows())
    rollouts.sort(key=lambda r: r["state"] != "running")  # stable: running first, then newest first
    return {"rollouts": rollouts, "active": [r for r in rollouts if r["state"] == "running"], "unavailable": err}


# -- monitoring ----------------------------------------------------------------------------------


def _monitoring(ws: Workspace, model: str | None, limit: int) -> dict[str, Any]:
    from steward.monitoring import list_actions, list_checks, list_verdicts

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
    from steward.loop import loop_history

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


def _by_model(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
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
    data, err = _guard("monitoring", lambda: _monitoring(ws, model, limit), _no_monitoring())
    out = []
    for name, m in sorted(_by_model(data).items()):
        loop, _ = _guard("loop", partial(_loop_runs, ws, name), _rows())
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
    data, err = _guard("monitoring", lambda: _monitoring(ws, model, limit), _no_monitoring())
    out = []
    for name, m in sorted(_by_model(data).items()):
        loop, _ = _guard("loop", partial(_loop_runs, ws, name), _rows())
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


# -- audit ---------------------------------------------------------------------------------------


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
                "details": _clip(json.dumps(e.payload.get("details", {}), sort_keys=True, default=str), 300),
                "hash": e.hash,
            }
            for e in shown
        ]
        v = ws.audit.verify()
        store = ws.metadata
        choices = {
            col: [str(r["v"]) for r in store.fetchall(f"SELECT DISTINCT {col} AS v FROM audit_log WHERE {col} IS NOT NULL ORDER BY {col}")]
            for col in ("model", "action", "actor")
        }
        return {
            "entries": rows,
            "matched": len(entries),
            "verification": {"ok": v.ok, "entries": v.entries, "first_bad_seq": v.first_bad_seq, "problem": v.problem},
            "choices": choices,
        }

    empty: dict[str, Any] = {"entries": [], "matched": 0, "verification": None, "choices": {"model": [], "action": [], "actor": []}}
    data, err = _guard("audit", read, empty)
    return {**data, "filters": {"model": model or "", "action": action or "", "actor": actor or ""}, "unavailable": err}


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# -- LLM spend -----------------------------------------------------------------------------------


def _per_day(ws: Workspace, column: str, since: str) -> tuple[list[str], dict[str, list[float]]]:
    rows = ws.metadata.fetchall(
        f"SELECT day, {column} AS name, SUM(cost_usd) AS cost FROM llm_usage WHERE day >= ? GROUP BY day, {column} ORDER BY day", (since,)
    )
    days = sorted({str(r["day"]) for r in rows})
    names = sorted({str(r["name"]) for r in rows})
    stacks = {n: [0.0] * len(days) for n in names}
    index = {d: i for i, d in enumerate(days)}
    for r in rows:
        stacks[str(r["name"])][index[str(r["day"])]] += float(r["cost"] or 0.0)
    return days, stacks


def _projection_chart(ws: Workspace, now: datetime, projected: float, budgets: dict[str, float]) -> str:
    """Cumulative spend this month, and the straight line to the month's projection."""
    import calendar

    month_start = now.strftime("%Y-%m-01")
    rows = ws.metadata.fetchall("SELECT day, SUM(cost_usd) AS cost FROM llm_usage WHERE day >= ? GROUP BY day ORDER BY day", (month_start,))
    total, spent = 0.0, []
    for r in rows:
        total += float(r["cost"] or 0.0)
        day_end = datetime.fromisoformat(str(r["day"])).replace(hour=23, minute=59, tzinfo=UTC)
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
        from steward.llm.gateway import cost_report

        report = cost_report(ws.metadata, days=days, now=now).to_dict()
        key_days, by_key = _per_day(ws, "key_name", report["since"])
        model_days, by_model = _per_day(ws, "model", report["since"])
        budgets, _ = _guard("budgets", lambda: _key_budgets(ws), dict[str, float]())
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

    data, err = _guard("LLM gateway", read, {"report": None, "charts": dict[str, str]()})
    return {**data, "month": now.strftime("%B %Y"), "unavailable": err}


# -- traces --------------------------------------------------------------------------------------


def traces_view(ws: Workspace, *, limit: int = 50, name: str | None = None) -> dict[str, Any]:
    """The most recent spans (newest first) with their main attributes."""

    def read() -> list[dict[str, Any]]:
        from steward.observability.tracing import recent_traces

        spans = recent_traces(ws, limit, name=name or None)
        for s in spans:
            s["started"] = datetime.fromtimestamp(int(s["start_ns"]) / 1e9, UTC)
            s["short_trace"] = str(s["trace_id"])[:12]
        # newest trace first, and within a trace in start order, so a parent span precedes its children
        first_seen: dict[str, int] = {}
        for i, s in enumerate(spans):
            first_seen.setdefault(str(s["trace_id"]), i)
        return sorted(spans, key=lambda s: (first_seen[str(s["trace_id"])], int(s["start_ns"])))

    spans, err = _guard("tracing", read, _rows())
    longest = max((float(s["duration_ms"]) for s in spans), default=0.0)
    return {"spans": spans, "longest_ms": longest, "name": name or "", "unavailable": err}


# -- overview ------------------------------------------------------------------------------------


def overview(ws: Workspace, *, now: datetime | None = None) -> dict[str, Any]:
    """The front page: models with champion and challenger, running rollouts, latest drift status, spend this month."""
    models = models_view(ws)
    rollouts = rollouts_view(ws, limit=20)
    mon, mon_err = _guard("monitoring", lambda: _monitoring(ws, None, 500), _no_monitoring())
    status = []
    for name, m in sorted(_by_model(mon).items()):
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
    audit, audit_err = _guard("audit", lambda: ws.audit.verify(), None)
    return {
        "models": models,
        "rollouts": rollouts,
        "monitoring": {"models": status, "unavailable": mon_err},
        "llm": llm,
        "audit": None if audit is None else {"ok": audit.ok, "entries": audit.entries, "problem": audit.problem},
        "audit_unavailable": audit_err,
    }
