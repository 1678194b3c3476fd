"""Prometheus metrics of the model server: RED per model, version and variant, and the server's queues.

Each :class:`ServingMetrics` owns its own ``CollectorRegistry`` (not the process
global), so several servers (and tests) in one process never collide. ``/metrics``
renders it with :meth:`ServingMetrics.render`.

Names (all prefixed ``steward_``):

* ``model_requests_total{model,version,variant,status}`` and
  ``model_request_duration_seconds{model,version,variant}``: RED per variant;
* ``http_requests_total{route,method,status}``, ``http_request_duration_seconds{route,method}``;
* ``batch_size{model,variant}``, ``batch_queue_depth{model,variant}``;
* ``shadow_*``: queue depth, drops, errors, timeouts, comparisons, disagreements;
* ``prediction_log_*``: queue depth, written, dropped, write errors;
* ``model_loaded{model,version,variant}``, ``model_reloads_total``, ``registry_poll_errors_total``;
* ``rollout_weight{model}``, ``rollout_events_total{model,action}``, ``ab_outcomes_total{model,variant,outcome}``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "ServingMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Fine buckets at the low end: a native tree model answers in well under a millisecond.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)


class ServingMetrics:
    """All metrics of one model server, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        if process:
            ProcessCollector(registry=r)
        self.requests = Counter(
            "steward_model_requests", "Model requests by outcome.", ["model", "version", "variant", "status"], registry=r
        )
        self.duration = Histogram(
            "steward_model_request_duration_seconds",
            "Model request latency (validation to answer).",
            ["model", "version", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rows = Counter("steward_model_rows", "Rows predicted.", ["model", "version", "variant"], registry=r)
        self.http_requests = Counter("steward_http_requests", "HTTP requests.", ["route", "method", "status"], registry=r)
        self.http_duration = Histogram(
            "steward_http_request_duration_seconds", "HTTP latency.", ["route", "method"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.http_rejected = Counter("steward_http_rejected", "Requests refused before routing (413, 401, 403).", ["reason"], registry=r)
        self.batch_size = Histogram(
            "steward_batch_size", "Rows per model call after micro-batching.", ["model", "variant"], buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_queue = Gauge("steward_batch_queue_depth", "Requests waiting for a batch.", ["model", "variant"], registry=r)
        self.shadow_queue = Gauge("steward_shadow_queue_depth", "Shadow copies waiting.", ["model"], registry=r)
        self.shadow_dropped = Counter("steward_shadow_dropped", "Shadow copies dropped: queue full.", ["model"], registry=r)
        self.shadow_errors = Counter("steward_shadow_errors", "Shadow challenger failures.", ["model", "kind"], registry=r)
        self.shadow_compared = Counter("steward_shadow_comparisons", "Shadow answers compared with the champion's.", ["model"], registry=r)
        self.shadow_disagreements = Counter("steward_shadow_disagreements", "Shadow answers whose label differed.", ["model"], registry=r)
        self.shadow_abs_diff = Histogram(
            "steward_shadow_abs_diff",
            "|challenger − champion| score.",
            ["model"],
            buckets=(0.001, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=r,
        )
        self.log_queue = Gauge("steward_prediction_log_queue_depth", "Prediction records waiting to be written.", registry=r)
        self.log_written = Counter("steward_prediction_log_written", "Prediction records written to the lake.", registry=r)
        self.log_dropped = Counter("steward_prediction_log_dropped", "Prediction records dropped: queue full.", registry=r)
        self.log_errors = Counter("steward_prediction_log_write_errors", "Failed lake writes of prediction records.", registry=r)
        self.loaded = Gauge(
            "steward_model_loaded", "1 for each loaded model version and variant.", ["model", "version", "variant"], registry=r
        )
        self.reloads = Counter("steward_model_reloads", "Model (re)loads by outcome.", ["model", "outcome"], registry=r)
        self.poll_errors = Counter("steward_registry_poll_errors", "Registry polls that failed (serving continues).", registry=r)
        self.ready = Gauge("steward_ready", "1 when every configured model is loaded.", registry=r)
        self.degraded = Gauge(
            "steward_model_degraded", "1 while a model serves a fallback: its alias's version fails verification.", ["model"], registry=r
        )
        self.verification_failures = Counter(
            "steward_model_verification_failures",
            "Versions refused at load (hashes, signature, or it does not load).",
            ["model"],
            registry=r,
        )
        self.rollout_weight = Gauge("steward_rollout_weight", "Challenger share in percent.", ["model", "mode"], registry=r)
        self.rollout_events = Counter("steward_rollout_events", "Rollout actions.", ["model", "action"], registry=r)
        self.ab_outcomes = Counter("steward_ab_outcomes", "Reported outcomes per variant.", ["model", "variant", "outcome"], registry=r)
        self.predicted_positive = Counter(
            "steward_predictions_positive", "Predictions with score >= 0.5, per variant.", ["model", "variant"], registry=r
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
