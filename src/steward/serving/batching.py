"""Adaptive micro-batching: concurrent requests share one model call, run off the event loop.

Requests are queued; a collector task takes the first, then keeps adding until
the batch has ``max_batch_size`` rows or ``max_wait_ms`` has passed since the first
arrived. It is *adaptive*: it waits only while more requests are known to be on
their way (requests already inside the handler, counted by :meth:`expect`), so a
lone request is never delayed, while a burst fills a batch. The model runs in a
dedicated thread so the event loop keeps accepting and validating requests while
a batch computes; batches pipeline (the next one gathers while one runs).

With ``inline_below_ms`` set, a small request whose model call has recently taken
less than that (a moving average, measured on every call) runs *inline* on the
event loop instead: for a native tree model answering in ~20 µs, the thread hop
and the future round trip cost more than the prediction, and batching has nothing
to win. A slow call raises the average and sends requests back to the thread and
the batch queue; nothing runs inline while batches are queued or in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BatchStats", "BatcherClosed", "MicroBatcher"]

logger = logging.getLogger(__name__)


class BatcherClosed(RuntimeError):
    """The batcher was closed (its model version retired by a swap) before this request was submitted.

    Nothing ran: the caller may submit the same request to the version now serving.
    """


@dataclass
class BatchStats:
    """Counts for tests and the admin status."""

    batches: int = 0
    rows: int = 0
    max_batch: int = 0


class MicroBatcher:
    """Batch concurrent predictions of one model variant.

    Args:
        predict: ``matrix → scores``; called in the batcher's worker thread.
        max_batch_size: Most rows in one model call.
        max_wait_ms: Longest a request waits for company once the first of a batch arrived.
        on_batch: Called with each batch size (metrics).
        on_depth: Called with the queue depth when it changes (metrics).
        name: Thread name prefix.
        inline_below_ms: Run a request smaller than ``max_batch_size`` on the calling (event-loop) thread while
            the moving average of model-call time is below this; 0 = always use the worker thread.
    """

    _EWMA_ALPHA = 0.05

    def __init__(
        self,
        predict: Callable[[Any], np.ndarray],
        *,
        max_batch_size: int = 64,
        max_wait_ms: float = 2.0,
        on_batch: Callable[[int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        name: str = "model",
        inline_below_ms: float = 0.0,
    ) -> None:
        self._raw_predict = predict
        self.inline_below_s = inline_below_ms / 1000.0
        # moving average of one model call; unknown (inf) until the first call, which goes to the thread
        self.call_s = float("inf")
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._on_batch = on_batch
        self._on_depth = on_depth
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[np.ndarray], float]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"steward-{name}")
        self._expected = 0
        self._submitted = 0  # requests submitted and not yet answered
        self._inflight_batches = 0
        self._closed = False
        # the batch the collector has taken off the queue and not yet handed to the worker
        self._holding: list[tuple[np.ndarray, asyncio.Future[np.ndarray], float]] = []
        self.inline_calls = 0
        self.stats = BatchStats()

    def _predict(self, rows: Any) -> np.ndarray:
        """The model call, timed into the moving average that decides inline vs thread."""
        t0 = time.perf_counter()
        try:
            return self._raw_predict(rows)
        finally:
            dt = time.perf_counter() - t0
            c = self.call_s
            self.call_s = dt if c == float("inf") else c + self._EWMA_ALPHA * (dt - c)

    # -- request side ---------------------------------------------------------------
    @contextlib.contextmanager
    def expect(self) -> Any:
        """Mark a request as on its way (inside the handler, not yet submitted) for adaptive waiting."""
        self._expected += 1
        try:
            yield
        finally:
            self._expected -= 1

    async def submit(self, rows: np.ndarray, *, inline: bool = True) -> np.ndarray:
        """Predict ``rows`` (a 2-D matrix), batched with concurrent callers.

        Args:
            inline: Allow the inline path; ``False`` always uses the worker thread (shadow copies:
                nobody waits for them, so they must never hold the event loop).

        Raises:
            BatcherClosed: the batcher is closed; the model was not called.
        """
        if self._closed:
            raise BatcherClosed("batcher is closed")
        if (
            inline
            and self.call_s < self.inline_below_s
            and len(rows) < self.max_batch_size
            and self._submitted == 0
            and not self._inflight_batches
        ):
            out = self._predict(rows)
            self.inline_calls += 1
            self._count(len(rows))
            return out
        if self._queue is None:
            self._start()
        assert self._queue is not None
        if len(rows) >= self.max_batch_size:
            # a big request is its own batch: no point queueing it behind singles
            return await self.run_direct(rows)
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._submitted += 1
        self._queue.put_nowait((rows, fut, time.perf_counter()))
        if self._on_depth is not None:
            self._on_depth(self._queue.qsize())
        return await fut

    async def run_direct(self, rows: Any) -> np.ndarray:
        """Run one model call in the worker thread, unbatched."""
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(self._executor, self._predict, rows)
        self._count(len(rows))
        return out

    def _count(self, n: int) -> None:
        self.stats.batches += 1
        self.stats.rows += n
        self.stats.max_batch = max(self.stats.max_batch, n)
        if self._on_batch is not None:
            self._on_batch(n)

    # -- collector ------------------------------------------------------------------
    def _start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="steward-batcher")

    async def _collect(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        while True:
            first = await queue.get()
            batch = self._holding = [first]
            n = len(first[0])
            deadline = first[2] + self.max_wait_s
            while n < self.max_batch_size:
                if not queue.empty():
                    item = queue.get_nowait()
                    batch.append(item)
                    n += len(item[0])
                    continue
                # wait only while more requests are inside a handler and not yet submitted
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or self._expected - self._submitted <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=remaining)
                except TimeoutError:
                    break
                batch.append(item)
                n += len(item[0])
            if self._on_depth is not None:
                self._on_depth(queue.qsize())
            matrix = batch[0][0] if len(batch) == 1 else np.concatenate([b[0] for b in batch])
            self._inflight_batches += 1
            fut = loop.run_in_executor(self._executor, self._predict, matrix)
            self._holding = []
            fut.add_done_callback(lambda f, b=batch: self._deliver(f, b))  # type: ignore[misc]
            self._count(n)

    def _deliver(self, fut: asyncio.Future[np.ndarray], batch: list[tuple[np.ndarray, asyncio.Future[np.ndarray], float]]) -> None:
        self._inflight_batches -= 1
        self._submitted -= len(batch)
        exc = fut.exception()
        if exc is not None:
            for _, f, _ in batch:
                if not f.done():
                    f.set_exception(exc)
            return
        out = fut.result()
        start = 0
        for rows, f, _ in batch:
            end = start + len(rows)
            if not f.done():
                f.set_result(out[start:end])
            start = end

    async def aclose(self, drain_timeout_s: float = 10.0) -> None:
        """Stop after every submitted request is answered (no request is dropped on a model swap).

        Waits on the count of submitted-but-unanswered requests rather than the queue: the
        collector may hold a batch it has taken off the queue and not yet dispatched, and
        cancelling it then would strand those callers forever. Whatever is still unanswered
        at the deadline fails with an error instead of hanging.
        """
        self._closed = True
        deadline = time.monotonic() + drain_timeout_s
        while (self._submitted > 0 or self._inflight_batches) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        stranded = list(self._holding)
        self._holding.clear()
        if self._queue is not None:
            while not self._queue.empty():
                stranded.append(self._queue.get_nowait())
        for _, f, _ in stranded:
            if not f.done():
                f.set_exception(RuntimeError("batcher closed before this request was answered"))
        self._executor.shutdown(wait=False, cancel_futures=False)
