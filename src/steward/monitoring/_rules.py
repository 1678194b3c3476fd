"""Monitoring rules: each policy's detector paired with its thresholds, turned into checks and actions.

Pure: no IO. :func:`evaluate` takes a reference and a window profile (and the window's
quality and SLO statuses) and returns every :class:`PolicyCheck` with its status and one
:class:`PolicyAction` per breached policy. The monitoring pass (:mod:`._pass`) gathers the
inputs; executing the actions is the loop's job.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Literal

from steward.errors import ValidationFailed
from steward.monitoring._drift import ALL_DETECTORS, P_VALUE_DETECTORS, DriftOptions, DriftResult, compare_columns
from steward.monitoring._performance import HIGHER_IS_BETTER
from steward.monitoring._profile import ColumnProfile, ReferenceProfile
from steward.monitoring._slo import DEFAULT_BURN_ALERTS, BurnAlert, SloStatus
from steward.spec import MonitoringSpec, MonitorPolicySpec

__all__ = [
    "DEFAULT_POLICIES",
    "STATUS_CODES",
    "CheckStatus",
    "PolicyAction",
    "PolicyCheck",
    "burn_levels",
    "effective_policies",
    "evaluate",
    "worst_status",
]

logger = logging.getLogger(__name__)

STATUS_CODES = {"ok": 0, "insufficient_data": 0, "no_data": 0, "warn": 1, "breach": 2}
"""Severity of a check status: the verdict's status is the worst of its checks; the gauges export these codes."""

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
