"""The monitoring pass on a schedule: every logged model, every interval, in a background thread."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from steward._primitives import utcnow
from steward.errors import NotFound, TableNotFound
from steward.monitoring._pass import NO_PREDICTIONS, evaluate_policies, logged_models
from steward.monitoring._verdicts import MonitorVerdict

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from steward.workspace import Workspace

__all__ = ["MonitorScheduler"]

logger = logging.getLogger(__name__)


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
            except (TableNotFound, NotFound) as exc:
                if not self._nothing_logged_yet(exc):
                    self._failed(model, exc)
                    continue
                # a fresh server has no prediction log yet: normal, not an error (Issue 14)
                logger.info("monitor pass for %s skipped: no predictions logged yet", model)
                logger.debug("monitor pass for %s: %s", model, exc)
            except Exception as exc:  # a background loop must survive one model's failure
                self._failed(model, exc)
        self.passes += 1
        self.last_pass_at = utcnow()
        return out

    def _nothing_logged_yet(self, exc: Exception) -> bool:
        """Whether ``exc`` only says no prediction has been logged yet (no log table, or none in the window)."""
        if isinstance(exc, TableNotFound):
            return self.ws.spec.monitoring.table in exc.message
        return isinstance(exc, NotFound) and exc.code == NO_PREDICTIONS

    def _failed(self, model: str, exc: Exception) -> None:
        """Record and log a real failure of one model's pass (with its traceback)."""
        self.last_error = f"{model}: {exc}"
        logger.error("monitor pass for %s failed", model, exc_info=exc)

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
