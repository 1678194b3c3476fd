"""Prometheus gauges for monitoring verdicts, and the matching alerting rules.

Gauges live in the default ``prometheus_client`` registry (what the API's ``/metrics``
serves) unless a registry is passed. The alert rules reference these gauges and carry a
``runbook_url`` annotation pointing at ``docs/runbooks/``.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from steward.monitoring._drift import P_VALUE_DETECTORS
from steward.monitoring._performance import HIGHER_IS_BETTER
from steward.monitoring._rules import STATUS_CODES, burn_levels, effective_policies
from steward.monitoring._slo import DEFAULT_BURN_ALERTS

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from steward.spec import MonitorPolicySpec, Spec

__all__ = ["STATUS_CODES", "monitor_gauges", "prometheus_rules"]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_cache: dict[int, dict[str, Any]] = {}


def monitor_gauges(registry: CollectorRegistry | None = None) -> dict[str, Any]:
    """The monitoring gauges, created once per registry."""
    from prometheus_client import REGISTRY, Gauge

    reg = registry if registry is not None else REGISTRY
    with _lock:
        got = _cache.get(id(reg))
        if got is not None:
            return got
        g = {
            "statistic": Gauge(
                "steward_monitor_statistic", "Latest value of a monitoring check", ["model", "policy", "detector", "column"], registry=reg
            ),
            "check_status": Gauge(
                "steward_monitor_check_status", "0 ok, 1 warn, 2 breach", ["model", "policy", "detector", "column"], registry=reg
            ),
            "policy_status": Gauge(
                "steward_monitor_policy_status",
                "Worst check status of a policy (0 ok, 1 warn, 2 breach)",
                ["model", "policy"],
                registry=reg,
            ),
            "model_metric": Gauge(
                "steward_monitor_model_metric", "Model quality on the latest labelled window", ["model", "metric", "slice"], registry=reg
            ),
            "slo_burn_rate": Gauge("steward_slo_burn_rate", "Error-budget burn rate", ["model", "slo", "window"], registry=reg),
            "slo_budget_remaining": Gauge(
                "steward_slo_error_budget_remaining", "Share of the error budget left", ["model", "slo"], registry=reg
            ),
            "slo_sli": Gauge("steward_slo_sli", "SLI over the SLO period", ["model", "slo"], registry=reg),
            "alert_firing": Gauge(
                "steward_monitor_alert_firing", "1 while a policy alert fires", ["model", "policy", "action", "runbook"], registry=reg
            ),
            "last_run": Gauge(
                "steward_monitor_last_run_timestamp_seconds", "When the monitor last evaluated a model", ["model"], registry=reg
            ),
        }
        _cache[id(reg)] = g
        return g


def _runbook_url(spec: Spec, path: str | None) -> str:
    return path or "docs/runbooks/README.md"


def _policy_summary(p: MonitorPolicySpec) -> str:
    """What breaching the policy means, with its real levels (the same ones its checks record)."""
    if p.on == "slo":
        which = "every SLO" if p.detector == "all" else f"SLO {p.detector}"
        levels = " or ".join(f"above {lvl:g}x over both {a.long_window} and {a.short_window}" for a, lvl, _ in burn_levels(p))
        return f"policy {p.name}: {which} burns its error budget {levels}"
    below = HIGHER_IS_BETTER.get(p.detector, True) if p.on == "performance" else p.detector in P_VALUE_DETECTORS
    cols = "" if p.on != "features" or p.columns == "all" else f" ({', '.join(p.columns)})"
    return f"policy {p.name}: {p.detector} on {p.on}{cols} {'below' if below else 'at or above'} {p.threshold:g}"


def prometheus_rules(spec: Spec) -> dict[str, Any]:
    """Prometheus alerting rules for every policy and SLO of the spec (a ``groups:`` document)."""
    rules: list[dict[str, Any]] = []
    for p in effective_policies(spec.monitoring):
        rules.append(
            {
                "alert": f"Steward{''.join(w.capitalize() for w in p.name.replace('-', '_').split('_'))}",
                "expr": f'max by (model) (steward_monitor_policy_status{{policy="{p.name}"}}) >= 2',
                "for": "0m",
                "labels": {"severity": "page" if p.action in ("rollback",) else "ticket", "action": p.action},
                "annotations": {
                    "summary": _policy_summary(p),
                    "runbook_url": _runbook_url(spec, p.runbook),
                },
            }
        )
    # quality SLOs too: their burn rates come from labelled predictions, up to the label horizon
    for slo in spec.monitoring.slos:
        for a in DEFAULT_BURN_ALERTS:
            lw, sw = a.long_window, a.short_window
            rules.append(
                {
                    "alert": f"Steward{slo.name.capitalize()}{''.join(w.capitalize() for w in a.name.split('_'))}",
                    # the two series differ in their window label: match them on the rest, or `and` never matches
                    "expr": (
                        f'steward_slo_burn_rate{{slo="{slo.name}",window="{lw}"}} > {a.factor:g} '
                        f'and ignoring(window) steward_slo_burn_rate{{slo="{slo.name}",window="{sw}"}} > {a.factor:g}'
                    ),
                    "labels": {"severity": a.severity},
                    "annotations": {
                        "summary": f"SLO {slo.name} burns its error budget {a.factor:g}x too fast ({lw}/{sw})",
                        "runbook_url": "docs/runbooks/slo-burn.md",
                    },
                }
            )
    return {"groups": [{"name": "steward-monitoring", "rules": rules}]}
