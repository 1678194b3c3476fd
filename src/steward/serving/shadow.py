"""Shadow traffic: copies of champion requests answered by the challenger, compared, logged, never returned.

The predict path puts a copy of each validated request (the raw rows, the champion's scores,
the request id) on a bounded per-model queue and returns at once; a full queue drops the copy
and counts it. Separate worker tasks answer the copies with the challenger under a timeout:
the challenger fills its own online features and encodes the rows itself (its category codes
and features are its own), and never runs inline on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from steward.observability.metrics import ServingMetrics
from steward.serving.batching import BatcherClosed
from steward.serving.runtime import field_errors, validation_error
from steward.serving.slots import ServedModel, ShadowCopy, VariantSlot
from steward.spec import ServingSpec

__all__ = ["ShadowTraffic"]

logger = logging.getLogger(__name__)

FillOnline = Callable[[ServedModel, VariantSlot, list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]
LogPredictions = Callable[..., None]


class ShadowTraffic:
    """Start, stop and run the shadow workers of each model.

    Args:
        serving: The ``serving`` section (``shadow.queue_size``, ``workers``, ``timeout_ms``).
        metrics: The server's metrics (comparisons, disagreements, errors, queue depth).
        fill_online: The server's online-feature lookup ``(model, slot, rows) → rows``.
        log: The server's prediction logger entry ``(model, slot, label, request_id, rows, scores, latency_ms, shadow=True)``.
    """

    def __init__(self, serving: ServingSpec, metrics: ServingMetrics, *, fill_online: FillOnline, log: LogPredictions) -> None:
        self.serving = serving
        self.metrics = metrics
        self._fill_online = fill_online
        self._log = log
        self.tasks: list[asyncio.Task[None]] = []

    def ensure(self, m: ServedModel) -> None:
        """Start ``m``'s queue and workers (nothing when they run already)."""
        if m.shadow_queue is not None:
            return
        cfg = self.serving.shadow
        m.shadow_queue = asyncio.Queue(maxsize=cfg.queue_size)
        loop = asyncio.get_running_loop()
        for i in range(cfg.workers):
            task = loop.create_task(self._worker(m, m.shadow_queue), name=f"steward-shadow-{m.name}-{i}")
            m.shadow_tasks.append(task)
            self.tasks.append(task)

    def stop(self, m: ServedModel) -> None:
        """Stop ``m``'s workers; pending copies are dropped (they were never going to be answered)."""
        if m.shadow_queue is None:
            return
        m.shadow_queue = None
        for task in m.shadow_tasks:
            task.cancel()
        self.tasks = [t for t in self.tasks if t not in m.shadow_tasks]
        m.shadow_tasks.clear()
        self.metrics.shadow_queue.labels(m.name).set(0)

    def forget(self, models: Sequence[ServedModel]) -> None:
        """After shutdown: no model keeps a queue or a worker."""
        self.tasks.clear()
        for m in models:
            m.shadow_tasks.clear()
            m.shadow_queue = None

    async def _predict(self, m: ServedModel, slot: VariantSlot, rows: list[Any]) -> tuple[list[Any], np.ndarray]:
        """The challenger's answer to a shadow copy: its own online features, validation and encoding."""
        if m.spec.entity_keys:
            rows = await self._fill_online(m, slot, rows)
        # fields only the champion takes are no error of the challenger's (a retrain may drop a feature)
        keep = {*slot.runtime.feature_names, *m.spec.entity_keys}
        rows = [{k: v for k, v in r.items() if k in keep} for r in rows]
        errors = field_errors(slot.runtime.schema, rows)
        if errors:
            raise validation_error(errors)
        # category codes are relearned at every training run: the champion's matrix would mean other categories here
        x = slot.runtime.to_input(rows)  # type: ignore[attr-defined]
        return rows, await slot.batcher.submit(x, inline=False)  # a copy nobody waits for never holds the event loop

    async def _worker(self, m: ServedModel, q: asyncio.Queue[ShadowCopy]) -> None:
        timeout = self.serving.shadow.timeout_ms / 1000.0
        gauge = self.metrics.shadow_queue.labels(m.name)
        while True:
            rows, champion_scores, request_id = await q.get()
            gauge.set(q.qsize())
            slot = m.challenger
            if slot is None:
                continue
            t0 = time.perf_counter()
            try:
                rows, scores = await asyncio.wait_for(self._predict(m, slot, rows), timeout)
            except BatcherClosed:
                continue  # the challenger was swapped out meanwhile: nothing to compare against
            except TimeoutError:
                slot.window.record((time.perf_counter() - t0) * 1000.0, True)
                self.metrics.shadow_errors.labels(m.name, "timeout").inc()
                continue
            except Exception as exc:
                slot.window.record((time.perf_counter() - t0) * 1000.0, True)
                self.metrics.shadow_errors.labels(m.name, "error").inc()
                logger.debug("shadow challenger of %s failed: %s", m.name, exc)
                continue
            latency = (time.perf_counter() - t0) * 1000.0
            slot.window.record(latency, False, float(np.mean(scores)) if len(scores) else math.nan)
            diff = np.abs(scores - champion_scores)
            disagree = (scores >= 0.5) != (champion_scores >= 0.5)
            self.metrics.shadow_compared.labels(m.name).inc(len(scores))
            if disagree.any():
                self.metrics.shadow_disagreements.labels(m.name).inc(int(disagree.sum()))
            for d, dd in zip(diff, disagree, strict=True):
                self.metrics.shadow_abs_diff.labels(m.name).observe(float(d))
                slot.window.record_comparison(bool(dd))
            self._log(m, slot, "shadow", request_id, rows, scores, latency, shadow=True)
