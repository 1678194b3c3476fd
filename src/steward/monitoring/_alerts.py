"""Alerts of a monitoring pass: the Prometheus gauges, the log, and the webhook.

:func:`publish_gauges` sets every gauge of :mod:`._metrics` from a verdict (what the alerting rules
read); :func:`notify_actions` logs each action and POSTs it to ``monitoring.webhook_url``. Delivery
failures are logged and recorded in the verdict's details, never raised: a monitor must not
stop because a receiver is down.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from steward.monitoring._metrics import monitor_gauges
from steward.monitoring._rules import STATUS_CODES
from steward.monitoring._verdicts import MonitorVerdict
from steward.spec import MonitorPolicySpec

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from steward.workspace import Workspace

__all__ = ["notify_actions", "publish_gauges", "send_webhook"]

logger = logging.getLogger(__name__)


def publish_gauges(verdict: MonitorVerdict, policies: list[MonitorPolicySpec], registry: CollectorRegistry | None) -> None:
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


def notify_actions(ws: Workspace, verdict: MonitorVerdict) -> None:
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
