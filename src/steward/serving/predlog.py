"""The prediction log: every prediction to the lake, in batched writes off the request path.

:meth:`PredictionLogger.log` only puts a record in a bounded queue (never blocks,
never raises); a writer thread turns queued records into one Delta commit every
``flush_rows`` records or ``flush_interval_s`` seconds. When the queue is full the
record is dropped and counted, so a slow lake can never slow a response.

Table schema (``logs.predictions`` by default, partitioned by ``_date``)::

    request_id, ts (timestamp, UTC), model, version, variant, shadow (bool),
    features (JSON), prediction (double, null when the model failed), latency_ms (double),
    status ("ok" or "error"), error (short error code, null when ok),
    label (the predicted class, multiclass only), probabilities (JSON {class: p}, multiclass only), _date

``prediction`` is P(positive) for a binary model, the value for a regression model and the predicted
class's probability for a multiclass one (its label and every class's probability are in ``label`` and
``probabilities``: one JSON column rather than a column per class, so models with different classes
share the table).

A request whose model call failed is logged too (``status = "error"``), so the
availability SLI sees it; a rejected request (4xx) is the caller's error and is not
logged. Tables written before ``status``/``error`` existed gain them on the next
append (schema merge); their old rows read as null, which counts as ok.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from steward.errors import BackendUnavailable

if TYPE_CHECKING:
    from steward.data.lake import Lake

__all__ = ["PredictionLogger", "PredictionRecord"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One logged prediction (features kept as the validated row; encoded off the request path).

    ``status`` is ``"ok"``, or ``"error"`` for a request whose model call failed; then ``error``
    holds a short error code and ``prediction`` is None.
    """

    request_id: str
    ts: float
    model: str
    version: str
    variant: str
    features: Mapping[str, Any]
    prediction: float | None
    latency_ms: float
    shadow: bool = False
    status: str = "ok"
    error: str | None = None
    label: str | None = None
    probabilities: str | None = None


class PredictionLogger:
    """Batched, asynchronous, bounded prediction logging.

    The request side only appends to a deque (no lock, no wake-up of the writer: waking a
    thread per request would hand the GIL back and forth on every prediction); the writer
    thread drains it every few milliseconds.

    Args:
        write: Writes one Arrow table (one Delta commit); default: ``lake.write(table, ...)``.
        lake: The lake (used when ``write`` is not given).
        table: Target table reference.
        queue_size: Bound of the in-memory queue; beyond it records are dropped and counted.
        flush_rows: Records per write.
        flush_interval_s: Longest a record waits before being written.
        on_drop: Called once per dropped record (metrics).
        on_written: Called with the number of records written (metrics).
        on_error: Called once per failed write (metrics).
        on_depth: Called with the queue depth (metrics).
        compact_every: Compact the partition just written after this many writes (0: never).
        compact: Compacts one ``_date`` partition; default: :meth:`Lake.compact` on ``table``.
    """

    _POLL_S = 0.02

    def __init__(
        self,
        *,
        write: Callable[[Any], None] | None = None,
        lake: Lake | None = None,
        table: str = "logs.predictions",
        queue_size: int = 100_000,
        flush_rows: int = 5_000,
        flush_interval_s: float = 5.0,
        on_drop: Callable[[], None] | None = None,
        on_written: Callable[[int], None] | None = None,
        on_error: Callable[[], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        compact_every: int = 0,
        compact: Callable[[str], None] | None = None,
    ) -> None:
        if write is None:
            if lake is None:
                raise ValueError("give either write or lake")
            lk = lake

            def write(tbl: Any) -> None:
                lk.write(table, tbl, mode="append", partition_by=["_date"], operation="prediction_log")

            if compact is None:

                def compact(day: str) -> None:
                    lk.compact(table, partition_filters=[("_date", "=", day)])

        self._write = write
        self._compact = compact
        self.compact_every = compact_every
        self.compactions = 0
        self._since_compact = 0
        self.table = table
        self.queue_size = queue_size
        self._queue: deque[PredictionRecord] = deque()
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self._on_drop = on_drop
        self._on_written = on_written
        self._on_error = on_error
        self._on_depth = on_depth
        self.dropped = 0
        self.written = 0
        self.errors = 0
        self.writes = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._flush_now = threading.Event()
        self._busy = threading.Lock()
        self._backoff_s = 0.0
        self._retry_at = 0.0

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="steward-predlog", daemon=True)
            self._thread.start()

    def log(self, record: PredictionRecord) -> bool:
        """Queue one record; False (and a drop counted) when the queue is full. Never blocks."""
        if len(self._queue) >= self.queue_size:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
            return False
        self._queue.append(record)
        return True

    @property
    def depth(self) -> int:
        """Records waiting."""
        return len(self._queue)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Write everything queued now and wait for it (tests, shutdown); a failed write ends the wait (its records stay queued)."""
        if self._thread is None or not self._thread.is_alive():
            self._drain(force=True)
            return
        errors = self.errors
        self._flush_now.set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (self._queue or self._flush_now.is_set()) and self.errors == errors:
            time.sleep(0.005)

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush and stop the writer."""
        self.flush(timeout_s)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._drain(force=True)
        if self._queue:
            logger.error("%d prediction records could not be written to %s before shutdown", len(self._queue), self.table)

    def _take(self, n: int) -> list[PredictionRecord]:
        batch: list[PredictionRecord] = []
        q = self._queue
        with contextlib.suppress(IndexError):
            while len(batch) < n:
                batch.append(q.popleft())
        return batch

    def _drain(self, *, force: bool) -> None:
        with self._busy:
            while self._queue and (force or len(self._queue) >= self.flush_rows):
                if not self._flush(self._take(self.flush_rows)):
                    break

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            time.sleep(self._POLL_S)
            now = time.monotonic()
            forced = self._flush_now.is_set()
            if now < self._retry_at and not forced:
                pass  # the last write failed: wait out the backoff (a flush() still tries at once)
            elif self._queue and (forced or now - last >= self.flush_interval_s):
                self._drain(force=True)
                last = time.monotonic()
            elif len(self._queue) >= self.flush_rows:
                self._drain(force=False)
            if forced and (not self._queue or self._retry_at > time.monotonic()):
                self._flush_now.clear()  # done, or failed: a failed forced flush must not retry every poll
            if self._on_depth is not None:
                self._on_depth(len(self._queue))

    def _flush(self, batch: list[PredictionRecord]) -> bool:
        if not batch:
            return True
        try:
            self._write(records_to_arrow(batch))
        except Exception as exc:
            # keep the batch, first in line, and retry after a backoff: a write that raised committed nothing
            # (the lake reports a landed commit as written even when its metadata record fails)
            self._queue.extendleft(reversed(batch))
            self.errors += 1
            self._backoff_s = min(self._backoff_s * 2, 10.0) if self._backoff_s else 0.5
            self._retry_at = time.monotonic() + self._backoff_s
            if self._on_error is not None:
                self._on_error()
            if isinstance(exc, BackendUnavailable):
                logger.warning(
                    "could not write %d prediction records to %s yet; kept, retrying in %.1fs: %s",
                    len(batch),
                    self.table,
                    self._backoff_s,
                    exc.message,
                )
            else:
                logger.exception(
                    "could not write %d prediction records to %s (kept, retrying in %.1fs)", len(batch), self.table, self._backoff_s
                )
            return False
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self.writes += 1
        self.written += len(batch)
        if self._on_written is not None:
            self._on_written(len(batch))
        self._since_compact += 1
        if self.compact_every and self._compact is not None and self._since_compact >= self.compact_every:
            # every write is a small file, and every monitoring scan pays for each one: fold the day's
            # files together now and then (in this thread, so requests never wait for it)
            self._since_compact = 0
            day = datetime.fromtimestamp(batch[-1].ts, UTC).strftime("%Y-%m-%d")
            try:
                self._compact(day)
                self.compactions += 1
            except Exception:
                logger.exception("could not compact %s for %s (the log keeps working)", self.table, day)
        return True


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def records_to_arrow(batch: list[PredictionRecord]) -> Any:
    """Records → an Arrow table in the prediction-log schema (vectorised where it can be)."""
    import orjson
    import pyarrow as pa
    import pyarrow.compute as pc

    dumps = orjson.dumps
    opt = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

    def encode(features: Mapping[str, Any]) -> str:
        try:
            return dumps(features, option=opt).decode()
        except TypeError:
            return json.dumps(dict(features), default=_json_default)

    micros = pa.array([int(r.ts * 1_000_000) for r in batch], pa.int64())
    ts = micros.cast(pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "request_id": pa.array([r.request_id for r in batch], pa.string()),
            "ts": ts,
            "model": pa.array([r.model for r in batch], pa.string()),
            "version": pa.array([r.version for r in batch], pa.string()),
            "variant": pa.array([r.variant for r in batch], pa.string()),
            "shadow": pa.array([r.shadow for r in batch], pa.bool_()),
            "features": pa.array([encode(r.features) for r in batch], pa.string()),
            "prediction": pa.array([r.prediction for r in batch], pa.float64()),
            "latency_ms": pa.array([r.latency_ms for r in batch], pa.float64()),
            "status": pa.array([r.status for r in batch], pa.string()),
            "error": pa.array([r.error for r in batch], pa.string()),
            "label": pa.array([r.label for r in batch], pa.string()),
            "probabilities": pa.array([r.probabilities for r in batch], pa.string()),
            "_date": pc.strftime(ts, format="%Y-%m-%d"),
        }
    )
