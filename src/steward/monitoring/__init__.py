"""Monitoring: reference profiles, drift statistics, performance with delayed labels, SLOs, policies, reports.

The main entry points:

* :func:`build_reference_profile` / :func:`save_profile` / :func:`load_profile` /
  :func:`profile_for_model`: what the training data looked like, stored as JSON with the model version.
* :class:`WindowProfiler` and :func:`iter_window_profiles`: windows of the prediction log, profiled in constant memory.
* :func:`compare_profiles`: every detector (PSI, KS, JS, KL, Wasserstein, chi-squared, null share) per column.
* :func:`join_labels` / :func:`performance_by_window`: quality per window and per slice once labels arrive.
* :func:`evaluate_slo`: error budgets and multi-window burn rates.
* :func:`evaluate_policies`: one monitoring pass → :class:`MonitorVerdict` (checks and :class:`PolicyAction` list).
* :class:`MonitorScheduler`: the same pass in a background thread.
* :func:`build_report`: HTML + JSON report from the recorded verdicts (the loop's runs are passed in:
  :func:`steward.ops.monitor_report` does).
"""

from __future__ import annotations

from steward._primitives import parse_duration
from steward.monitoring._alerts import send_webhook
from steward.monitoring._drift import ALL_DETECTORS, DriftOptions, DriftResult, compare_columns, compare_profiles
from steward.monitoring._metrics import monitor_gauges, prometheus_rules
from steward.monitoring._pass import MonitorWindow, evaluate_policies, logged_models
from steward.monitoring._performance import classification_metrics, join_labels, load_labels, performance_by_window, roc_auc
from steward.monitoring._profile import (
    ColumnProfile,
    ReferenceProfile,
    build_reference_profile,
    load_profile,
    profile_for_model,
    profile_path,
    save_profile,
    store_profile,
)
from steward.monitoring._report import LoopRunView, ReportPaths, build_report, report_data
from steward.monitoring._rules import DEFAULT_POLICIES, PolicyAction, PolicyCheck, burn_levels, effective_policies, evaluate
from steward.monitoring._scheduler import MonitorScheduler
from steward.monitoring._slo import DEFAULT_BURN_ALERTS, BurnAlert, SloStatus, burn_rate, evaluate_slo, quality_events, sli_events
from steward.monitoring._stats import chi2_test, js_distance, kl_divergence, ks_test, psi, wasserstein
from steward.monitoring._verdicts import (
    MonitorVerdict,
    latest_statuses,
    list_actions,
    list_checks,
    list_verdicts,
    mark_action,
    record_verdict,
)
from steward.monitoring._windows import LogWindow, WindowProfiler, iter_window_profiles, read_log

__all__ = [
    "ALL_DETECTORS",
    "DEFAULT_BURN_ALERTS",
    "DEFAULT_POLICIES",
    "BurnAlert",
    "ColumnProfile",
    "DriftOptions",
    "DriftResult",
    "LogWindow",
    "LoopRunView",
    "MonitorScheduler",
    "MonitorVerdict",
    "MonitorWindow",
    "PolicyAction",
    "PolicyCheck",
    "ReferenceProfile",
    "ReportPaths",
    "SloStatus",
    "WindowProfiler",
    "build_reference_profile",
    "build_report",
    "burn_levels",
    "burn_rate",
    "chi2_test",
    "classification_metrics",
    "compare_columns",
    "compare_profiles",
    "effective_policies",
    "evaluate",
    "evaluate_policies",
    "evaluate_slo",
    "iter_window_profiles",
    "join_labels",
    "js_distance",
    "kl_divergence",
    "ks_test",
    "latest_statuses",
    "list_actions",
    "list_checks",
    "list_verdicts",
    "load_labels",
    "load_profile",
    "logged_models",
    "mark_action",
    "monitor_gauges",
    "parse_duration",
    "performance_by_window",
    "profile_for_model",
    "profile_path",
    "prometheus_rules",
    "psi",
    "quality_events",
    "read_log",
    "record_verdict",
    "report_data",
    "roc_auc",
    "save_profile",
    "send_webhook",
    "sli_events",
    "store_profile",
    "wasserstein",
]
