"""The background monitor inside ``steward serve``: started and stopped with the app, status and run-now endpoints.

The monitor (:class:`~steward.monitoring.MonitorScheduler`) evaluates every served model's
policies each ``monitoring.schedule.interval_s`` in a thread of its own, publishing its drift
and SLO gauges into the server's registry so ``/metrics`` shows them. It starts only when the
app is built with ``monitor_schedule=True`` (``steward serve`` does, unless ``--no-monitor``):
an app embedded in tests or another program does not grow a thread it did not ask for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request

from steward import ops
from steward._primitives import PROBLEM_MEDIA_TYPE
from steward.api._offload import call_op
from steward.api.auth import require
from steward.errors import NotFound
from steward.monitoring import MonitorScheduler

__all__ = ["router", "setup"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/monitor", tags=["monitoring"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key", "content": {PROBLEM_MEDIA_TYPE: {}}},
    403: {"description": "Role too low", "content": {PROBLEM_MEDIA_TYPE: {}}},
    404: {"description": "The monitor is not running in this server", "content": {PROBLEM_MEDIA_TYPE: {}}},
}


def _scheduler(request: Request) -> MonitorScheduler:
    scheduler: MonitorScheduler | None = getattr(request.app.state, "monitor_scheduler", None)
    if scheduler is None:
        raise NotFound(
            "the background monitor is not running in this server",
            code="monitor.not_running",
            hint="start the server with `steward serve --monitor` and a project (monitoring.schedule.enabled)",
        )
    return scheduler


def _status(scheduler: MonitorScheduler) -> dict[str, Any]:
    return {
        "running": scheduler.running,
        "interval_s": scheduler.interval_s,
        "passes": scheduler.passes,
        "last_pass_at": scheduler.last_pass_at,
        "last_error": scheduler.last_error,
        "models": dict(scheduler.last_verdicts),
    }


@router.get("/status", summary="Background monitor status", responses=_ERRORS)
async def monitor_status(request: Request) -> dict[str, Any]:
    """Passes so far, the latest verdict per model, and the last error (viewer)."""
    require(request, "viewer")
    return _status(_scheduler(request))


@router.post("/run", summary="Run a monitoring pass now", responses=_ERRORS)
async def monitor_run(request: Request) -> dict[str, Any]:
    """Evaluate every model's policies now, off the event loop (operator); actions fire as on a scheduled pass."""
    require(request, "operator")
    scheduler = _scheduler(request)
    verdicts = await call_op(ops.run_monitor, request.app.state.workspace, monitor=scheduler)
    return {"verdicts": [{"model": v.model, "version": v.version, "status": v.status, "verdict_id": v.verdict_id} for v in verdicts]}


def setup(app: FastAPI) -> None:
    """Start the monitor with the app's lifespan when ``app.state.monitor_schedule`` is true and a project is open."""
    state = app.state
    ws = state.workspace
    if not getattr(state, "monitor_schedule", False) or ws is None:
        state.monitor_scheduler = None
        return
    server = getattr(state, "model_server", None)
    served = sorted(server.models) if server is not None and server.models else None
    registry = server.metrics.registry if server is not None else None
    scheduler = MonitorScheduler(ws, interval_s=ws.spec.monitoring.schedule.interval_s, models=served, registry=registry)
    state.monitor_scheduler = scheduler
    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with previous(a) as maybe_state:
            scheduler.start()
            logger.info("background monitor started (every %.0f s)", scheduler.interval_s)
            try:
                yield maybe_state
            finally:
                await asyncio.to_thread(scheduler.stop)

    app.router.lifespan_context = lifespan
