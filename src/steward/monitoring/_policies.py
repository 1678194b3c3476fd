"""Policies that act: each detector paired with a threshold and an action.

:func:`evaluate_policies` is the one hook the self-healing loop needs: it profiles the
latest window of the prediction log, compares it with the model version's reference
profile, joins delayed labels for quality, evaluates SLO burn rates, turns every policy
into checks (each statistic with its threshold) and returns the actions to take as data.
It records the verdict, its checks and its actions in the metadata store, updates the
Prometheus gauges, and sends ``alert`` notifications (log + webhook). Executing
``retrain``, ``rollback`` or ``shadow-then-promote`` is the loop's job.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from steward._primitives import iso_utc, parse_duration, utcnow
from steward.errors import NotFound, ValidationFailed
from steward.monitoring._drift import ALL_DETECTORS, P_VALUE_DETECTORS, DriftOptions, DriftResult, compare_columns
from steward.monitoring._metrics import STATUS_CODES, monitor_gauges
from steward.monitoring._performance import HIGHER_IS_BETTER, LABEL, classification_metrics, join_labels, load_labels
from steward.monitoring._profile import ColumnProfile, ReferenceProfile, profile_for_model
from steward.monitoring._slo import DEFAULT_BURN_ALERTS, BurnAlert, SloStatus, evaluate_slo, quality_events, sli_events, slo_kind
from steward.monitoring._windows import WindowProfiler, decode_features, iter_batches, read_log
from steward.spec import MonitoringSpec, MonitorPolicySpec

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from steward.workspace import Workspace

__all__ = [
    "DEFAULT_POLICIES",
    "MonitorScheduler",
    "MonitorVerdict",
    "MonitorWindow",
    "PolicyAction",
    "PolicyCheck",
    "burn_levels",
    "effective_policies",
    "evaluate",
    "evaluate_policies",
    "latest_statuses",
    "list_actions",
    "list_checks",
    "list_verdicts",
    "logged_models",
    "mark_action",
    "record_verdict",
    "send_webhook",
]

logger = logging.getLogger(__name__)

CheckStatus = Literal["ok", "warn", "breach", "insufficient_data", "no_data"]
_ALERT_NAMES = frozenset(a.name for a in DEFAULT_BURN_ALERTS)

DEFAULT_POLICIES = (
    MonitorPolicySpec(
        name="feature_drift",
        detector="psi",
        on="features",
        threshold=0.2,
        warn=0.1,
        action="alert",
        runbook="docs/runbooks/feature-drift.md",
    ),
    MonitorPolicySpec(
        name="prediction_drift",
        detector="psi",
        on="prediction",
        threshold=0.2,
        warn=0.1,
        action="alert",
        runbook="docs/runbooks/prediction-drift.md",
    ),
    MonitorPolicySpec(
        name="performance_drop",
        detector="roc_auc",
        on="performance",
        threshold=0.6,
        warn=0.65,
        action="retrain",
        min_rows=200,
        runbook="docs/runbooks/performance-drop.md",
    ),
    MonitorPolicySpec(
        name="slo_burn", detector="all", on="slo", threshold=1.0, action="rollback", min_rows=1, runbook="docs/runbooks/slo-burn.md"
    ),
)


def effective_policies(mspec: MonitoringSpec) -> list[MonitorPolicySpec]:
    """The spec's policies, or the built-in defaults when it declares none."""
    return list(mspec.policies) if mspec.policies else list(DEFAULT_POLICIES)


@dataclass(frozen=True)
class MonitorWindow:
    """Which rows of the prediction log to judge: ``[start, end)`` by time, or the ``last_rows`` newest rows."""

    start: datetime | None = None
    end: datetime | None = None
    last_rows: int | None = None

    @classmethod
    def latest(cls, mspec: MonitoringSpec, now: datetime | None = None) -> MonitorWindow:
        """The most recent window as the spec defines it."""
        now = now or datetime.now(UTC)
        if mspec.window.by == "count":
            return cls(end=now, last_rows=int(mspec.window.size))
        return cls(start=now - parse_duration(mspec.window.size), end=now)


@dataclass(frozen=True)
class PolicyCheck:
    """One statistic of one policy against its thresholds.

    Attributes:
        direction: ``above`` (breach when value >= threshold; an SLO burn-rate check breaches when
            its value, the lower of the alert's two windows' burn rates, is strictly above the
            alert's factor, exactly when the alert fires) or ``below`` (p-values and
            higher-is-better metrics: breach when value < threshold).
        status: ``ok``, ``warn``, ``breach``, ``insufficient_data`` (fewer than ``min_rows``) or ``no_data``.
    """

    policy: str
    on: str
    detector: str
    column: str
    value: float | None
    statistic: float | None
    threshold: float
    warn: float | None
    direction: Literal["above", "below"]
    status: CheckStatus
    n_reference: int = 0
    n_window: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class PolicyAction:
    """What a breached policy asks for; executing it is the loop's job (``alert`` is sent by the monitor).

    Attributes:
        action: ``alert``, ``retrain``, ``rollback`` or ``shadow-then-promote``.
        reason: One line naming the breaching checks.
        columns: The breaching columns (features, ``prediction``, a slice or an SLO).
    """

    action_id: str
    policy: str
    action: str
    model: str
    version: str | None
    reason: str
    runbook: str | None
    columns: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["columns"] = list(self.columns)
        return d


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


# -- pure evaluation -----------------------------------------------------------------------


def _judge(value: float | None, threshold: float, warn: float | None, direction: str, n: int, min_rows: int) -> CheckStatus:
    if value is None:
        return "no_data"
    if n < min_rows:
        return "insufficient_data"
    if _worse(value, threshold, direction):
        return "breach"
    if warn is not None and _worse(value, warn, direction):
        return "warn"
    return "ok"


def _worse(value: float, level: float, direction: str) -> bool:
    return value < level if direction == "below" else value >= level


def _drift_checks(policy: MonitorPolicySpec, results: list[DriftResult]) -> list[PolicyCheck]:
    direction: Literal["above", "below"] = "below" if policy.detector in P_VALUE_DETECTORS else "above"
    return [
        PolicyCheck(
            policy.name,
            r.on,
            r.detector,
            r.column,
            r.value,
            r.statistic,
            policy.threshold,
            policy.warn,
            direction,
            _judge(r.value, policy.threshold, policy.warn, direction, r.n_window, policy.min_rows),
            r.n_reference,
            r.n_window,
        )
        for r in results
    ]


def evaluate(
    policies: list[MonitorPolicySpec],
    reference: ReferenceProfile,
    window: ReferenceProfile,
    *,
    model: str,
    version: str | None = None,
    performance: dict[str, dict[str, float | None]] | None = None,
    slos: list[tuple[SloStatus, Any]] | None = None,
    options: DriftOptions | None = None,
) -> tuple[list[PolicyCheck], list[PolicyAction]]:
    """Turn policies into checks and actions (pure: no IO).

    Args:
        performance: Slice label (``all``, ``origin=JFK``) → metrics (with ``n``) on labelled rows.
        slos: ``(status, spec)`` of each SLO.
    """
    checks: list[PolicyCheck] = []
    actions: list[PolicyAction] = []
    for p in policies:
        pc: list[PolicyCheck] = []
        if p.on in ("features", "prediction", "target"):
            if p.detector not in ALL_DETECTORS:
                raise ValidationFailed(f"policy {p.name}: unknown detector {p.detector!r}", hint=f"use one of {', '.join(ALL_DETECTORS)}")
            pairs: list[tuple[str, ColumnProfile | None, ColumnProfile | None]]
            if p.on == "features":
                names = reference.feature_names if p.columns == "all" else list(p.columns)
                pairs = [(n, reference.columns.get(n), window.columns.get(n)) for n in names]
            else:
                pairs = [(p.on, reference.column(p.on), window.column(p.on))]
            results: list[DriftResult] = []
            for name, ref, cur in pairs:
                if ref is None or cur is None:
                    continue
                results += compare_columns(ref, cur, on=p.on, column=name, detectors=[p.detector], options=options)
            pc = _drift_checks(p, results)
        elif p.on == "performance":
            higher = HIGHER_IS_BETTER.get(p.detector, True)
            direction: Literal["above", "below"] = "below" if higher else "above"
            for sl, metrics in (performance or {}).items():
                if p.columns != "all" and sl != "all" and sl.split("=", 1)[0] not in p.columns:
                    continue
                value = metrics.get(p.detector)
                n = int(metrics.get("n") or 0)
                pc.append(PolicyCheck(p.name, "performance", p.detector, sl, value, value, p.threshold, p.warn, direction,
                                      _judge(value, p.threshold, p.warn, direction, n, p.min_rows), 0, n))  # fmt: skip
        elif p.on == "slo":
            for status, spec in slos or []:
                if p.detector not in ("all", status.name):
                    continue
                pc += _burn_checks(p, status)
                if status.kind == "quality" and spec.min_value is not None:
                    pc.append(_quality_floor_check(p, status.name, spec, performance or {}))
        checks += pc
        breached = [c for c in pc if c.status == "breach"]
        if breached:
            cols = tuple(c.column for c in breached)
            top = ", ".join(_describe(c) for c in breached[:5])
            more = f" (+{len(breached) - 5} more)" if len(breached) > 5 else ""
            reason = f"{p.name}: {top}{more}"
            actions.append(PolicyAction(uuid.uuid4().hex, p.name, p.action, model, version, reason, p.runbook, cols))
    return checks, actions


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def _describe(c: PolicyCheck) -> str:
    """One breaching check with its real numbers, e.g. ``dep_delay psi=0.31 >= 0.2``."""
    if c.on == "slo" and c.detector in _ALERT_NAMES:
        return f"{c.column} {c.detector} burn rate {_fmt(c.value)}x > {_fmt(c.threshold)}x on both windows"
    op = "<" if c.direction == "below" else ">="
    return f"{c.column} {c.detector}={_fmt(c.value)} {op} {_fmt(c.threshold)}"


def burn_levels(policy: MonitorPolicySpec) -> list[tuple[BurnAlert, float, float | None]]:
    """Each burn alert of an ``on: slo`` policy with its breach and warn levels.

    ``threshold`` and ``warn`` multiply the alert's factor (14.4x for the fast burn, 6x for the
    slow one): an unset ``threshold`` means 1 (the SRE workbook's alerts), 2 acts only at twice
    those rates, and ``warn: 0.5`` warns at half of them.
    """
    scale = policy.threshold if "threshold" in policy.model_fields_set else 1.0
    return [(a, a.factor * scale, None if policy.warn is None else a.factor * policy.warn) for a in DEFAULT_BURN_ALERTS]


def _burn_checks(p: MonitorPolicySpec, status: SloStatus) -> list[PolicyCheck]:
    """One check per burn alert: the lower of its two windows' burn rates against the alert's factor.

    A multi-window alert fires only when both windows burn faster than its factor, i.e. when the
    lower of the two does, so that value against the factor gives exactly the alert's state.
    """
    out: list[PolicyCheck] = []
    for alert, level, warn in burn_levels(p):
        lr, sr = status.burn_rates.get(alert.long_window), status.burn_rates.get(alert.short_window)
        value = None if lr is None or sr is None else min(lr, sr)
        st: CheckStatus
        if value is None:
            st = "no_data"
        elif status.events < p.min_rows:
            st = "insufficient_data"
        elif value > level:  # strictly above, as the alert's rule (and the Prometheus rule) fires
            st = "breach"
        elif warn is not None and value > warn:
            st = "warn"
        else:
            st = "ok"
        column = f"{status.name}:{alert.long_window}/{alert.short_window}"
        out.append(PolicyCheck(p.name, "slo", alert.name, column, value, value, level, warn, "above", st, 0, status.events))
    return out


def _quality_floor_check(p: MonitorPolicySpec, name: str, spec: Any, performance: dict[str, dict[str, float | None]]) -> PolicyCheck:
    """A quality SLO's ``min_value``: its metric on the latest labelled window must stay on the good side of it."""
    metric = spec.metric or "roc_auc"
    overall = performance.get("all", {})
    value = overall.get(metric)
    n = int(overall.get("n") or 0)
    direction: Literal["above", "below"] = "below" if HIGHER_IS_BETTER.get(metric, True) else "above"
    st = _judge(value, spec.min_value, None, direction, n, p.min_rows)
    return PolicyCheck(p.name, "slo", metric, f"{name}:{metric}", value, value, spec.min_value, None, direction, st, 0, n)


def worst_status(checks: list[PolicyCheck]) -> str:
    """``breach`` > ``warn`` > ``ok`` (checks without data count as ok)."""
    codes = [STATUS_CODES.get(c.status, 0) for c in checks]
    top = max(codes, default=0)
    return {0: "ok", 1: "warn", 2: "breach"}[top]


# -- the monitoring pass -------------------------------------------------------------------


def _log_frame(ws: Workspace, mspec: MonitoringSpec, model: str, version: str | None, window: MonitorWindow) -> pl.LazyFrame:
    lf = read_log(ws, table=mspec.table, model=model, version=version, start=window.start, end=window.end)
    if window.last_rows is not None:
        lf = lf.sort("ts").tail(window.last_rows)
    return lf


def _pick_version(ws: Workspace, mspec: MonitoringSpec, model: str, window: MonitorWindow) -> str | None:
    lf = _log_frame(ws, mspec, model, None, window)
    if "version" not in lf.collect_schema().names():
        return None
    last = lf.sort("ts").select(pl.col("version").cast(pl.Utf8)).tail(1).collect()
    return str(last.item()) if last.height else None


def _distributions(reference: ReferenceProfile, window: ReferenceProfile) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pairs = [(n, reference.columns[n], window.columns.get(n)) for n in reference.feature_names]
    if reference.prediction is not None:
        pairs.append(("prediction", reference.prediction, window.prediction))
    for name, ref, cur in pairs:
        if cur is None:
            continue
        if ref.kind == "numeric":
            out[name] = {"kind": "numeric", "cuts": [float(x) for x in ref.cuts], "reference": [int(x) for x in ref.counts], "window": [int(x) for x in cur.counts],
                         "min": ref.min, "max": ref.max}  # fmt: skip
        else:
            keys = sorted(set(ref.categories) | set(cur.categories), key=lambda k: -(ref.categories.get(k, 0) + cur.categories.get(k, 0)))[
                :25
            ]
            out[name] = {"kind": "categorical", "categories": keys, "reference": [ref.categories.get(k, 0) for k in keys],
                         "window": [cur.categories.get(k, 0) for k in keys]}  # fmt: skip
    return out


def evaluate_policies(
    ws: Workspace,
    model: str,
    window: MonitorWindow | None = None,
    *,
    version: str | None = None,
    reference: ReferenceProfile | None = None,
    now: datetime | None = None,
    record: bool = True,
    notify: bool = True,
    registry: CollectorRegistry | None = None,
) -> MonitorVerdict:
    """One monitoring pass over ``model``: profile the window, evaluate every policy, return the verdict.

    Args:
        ws: The workspace (spec, lake, metadata).
        model: Model name as logged in the prediction log.
        window: Rows to judge (default: the latest window of ``monitoring.window``).
        version: Model version (default: the version of the newest logged row in the window).
        reference: The reference profile (default: :func:`profile_for_model`).
        now: The evaluation time (default: the current time).
        record: Write the verdict, checks and actions to the metadata store.
        notify: Send ``alert`` actions to the log and the webhook, and update the gauges.

    Returns:
        The verdict; ``verdict.actions`` lists what the loop should do.

    Raises:
        NotFound: no reference profile for the model version.
    """
    mspec = ws.spec.monitoring
    now = now or datetime.now(UTC)
    window = window or MonitorWindow.latest(mspec, now)
    version = version or _pick_version(ws, mspec, model, window)
    if reference is None:
        if version is None:
            raise NotFound(
                f"no logged predictions for model {model} in the window", hint="serve some traffic first, or widen monitoring.window"
            )
        reference = profile_for_model(ws, model, version)
    options = DriftOptions(psi_binning=mspec.psi_binning, wasserstein_norm=mspec.wasserstein_norm)
    policies = effective_policies(mspec)

    # 1. the window's profile, built chunk by chunk (bounded memory)
    profiler = WindowProfiler(reference, sample_size=mspec.reference_sample)
    slo_specs = list(mspec.slos)
    start_seen: datetime | None = None
    for chunk in iter_batches(_log_frame(ws, mspec, model, version, window)):
        profiler.update(chunk)
        if chunk.height and start_seen is None:
            start_seen = chunk.get_column("ts").min()  # type: ignore[assignment]
    window_profile = profiler.profile()

    # 2. quality on labelled rows (labels arrive late: judge the window shifted back by the label delay)
    performance: dict[str, dict[str, float | None]] = {}
    target_profile: ColumnProfile | None = None
    label_counts: dict[str, int] = {}
    if mspec.labels is not None:
        performance, target_profile, label_counts = _performance(ws, mspec, model, version, window, now, reference)
    if target_profile is not None:
        window_profile.target = target_profile

    # 3. SLOs over their own periods (burn windows reach back up to 6h, the budget over the period)
    slo_results: list[tuple[SloStatus, Any]] = []
    if slo_specs:
        slo_results = _slo_statuses(ws, mspec, model, now)

    checks, actions = evaluate(
        policies, reference, window_profile, model=model, version=version, performance=performance, slos=slo_results, options=options
    )
    verdict = MonitorVerdict(
        verdict_id=uuid.uuid4().hex,
        model=model,
        version=version,
        window_start=window.start or start_seen,
        window_end=window.end,
        n_rows=window_profile.n_rows,
        actions=actions,
        checks=checks,
        status=worst_status(checks),
        created_at=iso_utc(now),
        details={
            "distributions": _distributions(reference, window_profile),
            "performance": performance,
            "labels": label_counts,
            "slos": [s.to_dict() for s, _ in slo_results],
            "options": asdict(options),
        },
    )
    if notify:
        _publish(verdict, policies, registry)
        _notify(ws, verdict)
    if record:
        record_verdict(ws, verdict)
    return verdict


def _labelled(
    ws: Workspace, mspec: MonitoringSpec, model: str, version: str | None, window: MonitorWindow
) -> tuple[pl.DataFrame, int] | None:
    """The window's predictions joined with their labels, and how many label rows were collected (None: no labels)."""
    assert mspec.labels is not None
    keys = list(mspec.labels.join) or ["request_id"]
    lf = _log_frame(ws, mspec, model, version, window)
    names = lf.collect_schema().names()
    # only what the join, the metrics and the slices read (label columns too: join_labels lets the log's win)
    wanted = dict.fromkeys(["ts", "prediction", "features", *keys, *mspec.slices, LABEL, "label_ts"])
    preds = lf.select([c for c in wanted if c in names]).collect()
    if preds.height == 0:
        return None
    try:
        labels = load_labels(ws, mspec.labels, keys=keys, predictions=preds)
    except NotFound:
        logger.info("no labels yet in %s", mspec.labels.source)
        return None
    except Exception as exc:
        from steward.errors import TableNotFound

        if isinstance(exc, TableNotFound):
            logger.info("label table %s does not exist yet", mspec.labels.source)
            return None
        raise
    asof = (mspec.labels.direction, mspec.labels.tolerance) if mspec.labels.match == "asof" else None
    return join_labels(preds, labels, on=keys, asof=asof), labels.height


def _performance(
    ws: Workspace, mspec: MonitoringSpec, model: str, version: str | None, window: MonitorWindow, now: datetime, reference: ReferenceProfile
) -> tuple[dict[str, dict[str, float | None]], ColumnProfile | None, dict[str, int]]:
    assert mspec.labels is not None
    delay = parse_duration(mspec.labels.delay)
    shifted = MonitorWindow(
        start=window.start - delay if window.start else None, end=(window.end or now) - delay, last_rows=window.last_rows
    )  # fmt: skip
    got = _labelled(ws, mspec, model, version, shifted)
    if got is None:
        return {}, None, {}
    joined, n_labels = got
    counts = {"labels_loaded": n_labels, "labelled_rows": joined.height}
    if joined.height == 0:
        return {}, None, counts
    y = joined.get_column(LABEL).to_numpy()
    p = joined.get_column("prediction").to_numpy()
    out: dict[str, dict[str, float | None]] = {"all": classification_metrics(y, p)}
    slices = decode_features(joined, list(mspec.slices))
    for col in mspec.slices:
        if col not in slices.columns:
            continue
        for (val,), part in slices.partition_by(col, as_dict=True, maintain_order=True).items():
            out[f"{col}={val}"] = classification_metrics(part.get_column(LABEL).to_numpy(), part.get_column("prediction").to_numpy())
    target = None
    if reference.target is not None:
        prof = WindowProfiler(reference, target_col=LABEL, sample_size=mspec.reference_sample)
        prof.update(joined.select([LABEL, "prediction"]))
        target = prof.profile().target
    return out, target, counts


def _slo_statuses(ws: Workspace, mspec: MonitoringSpec, model: str, now: datetime) -> list[tuple[SloStatus, Any]]:
    out: list[tuple[SloStatus, Any]] = []
    longest = max((parse_duration(s.period) for s in mspec.slos), default=parse_duration("30d"))
    frame: pl.DataFrame | None = None
    labelled: dict[str, pl.DataFrame] = {}
    for slo in mspec.slos:
        if slo_kind(slo) == "quality":
            # labelled predictions are the events, judged up to the label horizon: younger ones have no label yet
            horizon = now - parse_duration(mspec.labels.delay) if mspec.labels is not None else now
            if slo.period not in labelled:
                got = None
                if mspec.labels is not None:
                    got = _labelled(ws, mspec, model, None, MonitorWindow(start=horizon - parse_duration(slo.period), end=horizon))
                labelled[slo.period] = got[0] if got is not None else pl.DataFrame()
            out.append((evaluate_slo(quality_events(labelled[slo.period], slo), slo, now=horizon), slo))
            continue
        if frame is None:
            # failed calls are availability events; shadow rows are dropped by sli_events
            lf = read_log(ws, table=mspec.table, model=model, start=now - longest, end=now, include_errors=True)
            log_cols = [c for c in ("ts", "status", "error", "latency_ms", "shadow") if c in lf.collect_schema().names()]
            frame = lf.select(log_cols).collect()
        out.append((evaluate_slo(sli_events(frame, slo), slo, now=now), slo))
    return out


def _publish(verdict: MonitorVerdict, policies: list[MonitorPolicySpec], registry: CollectorRegistry | None) -> None:
    g = monitor_gauges(registry)
    m = verdict.model
    worst: dict[str, int] = {}
    for c in verdict.checks:
        if c.value is not None:
            g["statistic"].labels(m, c.policy, c.detector, c.column).set(c.value)
        code = STATUS_CODES.get(c.status, 0)
        g["check_status"].labels(m, c.policy, c.detector, c.column).set(code)
        worst[c.policy] = max(worst.get(c.policy, 0), code)
    for pol, code in worst.items():
        g["policy_status"].labels(m, pol).set(code)
    for sl, metrics in verdict.details.get("performance", {}).items():
        for name, val in metrics.items():
            if val is not None and name != "n":
                g["model_metric"].labels(m, name, sl).set(val)
    for s in verdict.details.get("slos", []):
        for w, r in s.get("burn_rates", {}).items():
            if r is not None:
                g["slo_burn_rate"].labels(m, s["name"], w).set(r)
        if s.get("error_budget_remaining") is not None:
            g["slo_budget_remaining"].labels(m, s["name"]).set(s["error_budget_remaining"])
        if s.get("sli") is not None:
            g["slo_sli"].labels(m, s["name"]).set(s["sli"])
    fired = {a.policy for a in verdict.actions}
    for p in policies:
        g["alert_firing"].labels(m, p.name, p.action, p.runbook or "").set(1 if p.name in fired else 0)
    g["last_run"].labels(m).set(datetime.now(UTC).timestamp())


def _notify(ws: Workspace, verdict: MonitorVerdict) -> None:
    url = ws.spec.monitoring.webhook_url
    for a in verdict.actions:
        logger.warning("monitor %s: %s -> %s (runbook: %s)", verdict.model, a.reason, a.action, a.runbook)
        if url:
            payload = {
                "kind": "steward.monitor.action",
                "project": ws.spec.project,
                "verdict_id": verdict.verdict_id,
                "window_start": verdict.window_start.isoformat() if verdict.window_start else None,
                "window_end": verdict.window_end.isoformat() if verdict.window_end else None,
                "checks": [c.to_dict() for c in verdict.checks if c.policy == a.policy and c.status == "breach"],
                **a.to_dict(),
            }
            verdict.details.setdefault("webhook", {})[a.action_id] = send_webhook(url, payload)


def send_webhook(url: str, payload: dict[str, Any], *, timeout_s: float = 5.0, attempts: int = 2) -> int | None:
    """POST ``payload`` as JSON; return the HTTP status, or None when it could not be delivered (logged, never raised)."""
    import httpx

    for i in range(attempts):
        try:
            resp = httpx.post(url, json=payload, timeout=timeout_s)
            if resp.status_code < 500:
                return int(resp.status_code)
            logger.warning("webhook %s answered %s (attempt %d)", url, resp.status_code, i + 1)
            status = int(resp.status_code)
        except httpx.HTTPError as exc:
            logger.warning("webhook %s failed: %s (attempt %d)", url, exc, i + 1)
            status = None
    return status


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


def logged_models(ws: Workspace) -> list[str]:
    """Model names present in the prediction log (empty when there is no log yet)."""
    from steward.errors import TableNotFound

    try:
        lf = ws.lake.scan(ws.spec.monitoring.table)
    except TableNotFound:
        return []
    return sorted(str(m) for m in lf.select(pl.col("model").unique()).collect().get_column("model").to_list() if m is not None)


class MonitorScheduler:
    """Run :func:`evaluate_policies` for every logged model every ``interval_s`` seconds, in a background thread.

    Safe with several API replicas: each pass takes a named lock in the metadata store, so
    one replica evaluates a model per interval.

    Args:
        ws: The workspace.
        interval_s: Seconds between passes.
        models: Models to watch (default: every model in the prediction log).
        on_verdict: Called with each verdict (e.g. the loop's controller).
        registry: Prometheus registry for the drift and SLO gauges (the server's, so ``/metrics`` shows them).
    """

    def __init__(
        self,
        ws: Workspace,
        *,
        interval_s: float = 300.0,
        models: list[str] | None = None,
        on_verdict: Callable[[MonitorVerdict], None] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.ws = ws
        self.registry = registry
        self.last_pass_at: str | None = None
        self.last_verdicts: dict[str, dict[str, Any]] = {}
        self.interval_s = interval_s
        self.models = models
        self.on_verdict = on_verdict
        self.owner = f"monitor-{uuid.uuid4().hex[:8]}"
        self.passes = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[MonitorVerdict]:
        """One pass over every model; errors are logged per model and do not stop the others."""
        out: list[MonitorVerdict] = []
        for model in self.models or logged_models(self.ws):
            lock = f"monitor:{model}"
            if not self.ws.metadata.try_lock(lock, self.owner, max(self.interval_s, 1.0)):
                continue
            try:
                verdict = evaluate_policies(self.ws, model, registry=self.registry)
                out.append(verdict)
                self.last_verdicts[model] = {
                    "verdict_id": verdict.verdict_id,
                    "version": verdict.version,
                    "status": verdict.status,
                    "rows": verdict.n_rows,
                    "actions": [a.action for a in verdict.actions],
                    "at": verdict.created_at,
                }
                if self.on_verdict is not None:
                    self.on_verdict(verdict)
            except Exception as exc:  # a background loop must survive one model's failure
                self.last_error = f"{model}: {exc}"
                logger.exception("monitor pass for %s failed", model)
        self.passes += 1
        self.last_pass_at = utcnow()
        return out

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        """Start the background thread (no-op when running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="steward-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the thread to stop and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()
