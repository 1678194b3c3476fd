"""Incremental window profiles of the prediction log, in constant memory.

A :class:`WindowProfiler` takes chunks of logged predictions and keeps, per column, the
counts in the *reference's* bins, streaming moments (Chan's parallel update), min/max,
category counts (capped) and a bounded uniform sample (bottom-k by random priority, so
merging chunks gives the same distribution as sampling the whole window). Its state
does not grow with the number of rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from steward._primitives import parse_duration
from steward.errors import ValidationFailed
from steward.monitoring._profile import (
    PREDICTION,
    ColumnProfile,
    ReferenceProfile,
    bin_counts,
    cap_categories,
    category_counts,
    finite_values,
)

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = [
    "LogWindow",
    "WindowProfiler",
    "decode_features",
    "iter_window_profiles",
    "read_log",
]

logger = logging.getLogger(__name__)


class _NumericState:
    """Streaming state of one numeric column against fixed cut points."""

    __slots__ = ("counts", "cuts", "keys", "m2", "max", "mean", "min", "n", "nulls", "sample", "sample_size")

    def __init__(self, cuts: NDArray[np.float64], sample_size: int | None) -> None:
        self.cuts = cuts
        self.counts = np.zeros(cuts.size + 1, dtype=np.int64)
        self.n = 0
        self.nulls = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = np.inf
        self.max = -np.inf
        self.sample_size = sample_size
        self.sample = np.empty(0)
        self.keys = np.empty(0)

    def update(self, values: Any, rng: np.random.Generator) -> None:
        arr, nulls = finite_values(values)
        self.nulls += nulls
        k = arr.size
        if k == 0:
            return
        arr = np.sort(arr)  # sorting once is cheaper than a binary search per value
        self.counts += bin_counts(arr, self.cuts, assume_sorted=True)
        mean_b = float(arr.mean())
        m2_b = float(np.sum((arr - mean_b) ** 2))
        n = self.n + k
        delta = mean_b - self.mean
        self.mean += delta * k / n
        self.m2 += m2_b + delta * delta * self.n * k / n
        self.n = n
        self.min = min(self.min, float(arr[0]))
        self.max = max(self.max, float(arr[-1]))
        if self.sample_size is None:
            self.sample = arr if self.sample.size == 0 else np.concatenate([self.sample, arr])
            return
        # bottom-k sampling: keep the values with the smallest uniform priorities
        keys = rng.random(k)
        if k > self.sample_size:
            top = np.argpartition(keys, self.sample_size - 1)[: self.sample_size]
            arr, keys = arr[top], keys[top]
        allv = np.concatenate([self.sample, arr])
        allk = np.concatenate([self.keys, keys])
        if allv.size > self.sample_size:
            top = np.argpartition(allk, self.sample_size - 1)[: self.sample_size]
            allv, allk = allv[top], allk[top]
        self.sample, self.keys = allv, allk

    def profile(self) -> ColumnProfile:
        return ColumnProfile(
            kind="numeric",
            count=self.n,
            nulls=self.nulls,
            cuts=self.cuts,
            counts=self.counts.copy(),
            mean=self.mean,
            m2=self.m2,
            min=self.min if self.n else None,
            max=self.max if self.n else None,
            sample=self.sample,  # never mutated in place (updates rebind it), so sharing is safe
        )

    def size(self) -> int:
        return int(self.counts.size + self.sample.size + self.keys.size + 6)


class _CategoricalState:
    __slots__ = ("cats", "nulls")

    def __init__(self) -> None:
        self.cats: dict[str, int] = {}
        self.nulls = 0

    def update(self, values: Any) -> None:
        cats, nulls = category_counts(values)
        self.nulls += nulls
        for key, c in cats.items():
            self.cats[key] = self.cats.get(key, 0) + c
        self.cats = cap_categories(self.cats)

    def profile(self) -> ColumnProfile:
        return ColumnProfile(kind="categorical", count=sum(self.cats.values()), nulls=self.nulls, categories=dict(self.cats))

    def size(self) -> int:
        return len(self.cats) + 1


class WindowProfiler:
    """Profile a window of logged rows chunk by chunk, against a reference's bins.

    Args:
        reference: Gives the columns, their kinds and the numeric cut points.
        sample_size: Bound of each numeric sample (default: the reference's).
        prediction_col: Column of the logged prediction.
        target_col: Column of the label, when labels are joined in.
        seed: Seed for the sampling priorities.
    """

    def __init__(
        self,
        reference: ReferenceProfile,
        *,
        sample_size: int | None = -1,
        prediction_col: str = PREDICTION,
        target_col: str | None = None,
        seed: int = 0,
    ) -> None:
        size = reference.sample_size if sample_size == -1 else sample_size
        self.reference = reference
        self.prediction_col = prediction_col
        self.target_col = target_col
        self.rows = 0
        self._rng = np.random.default_rng(seed)
        self._states: dict[str, _NumericState | _CategoricalState] = {}
        for name, col in reference.columns.items():
            self._states[name] = _NumericState(col.cuts, size) if col.kind == "numeric" else _CategoricalState()
        self._pred = _NumericState(reference.prediction.cuts, size) if reference.prediction is not None else None
        self._target: _NumericState | _CategoricalState | None = None
        if reference.target is not None and target_col:
            self._target = _NumericState(reference.target.cuts, size) if reference.target.kind == "numeric" else _CategoricalState()

    def _feed(self, state: _NumericState | _CategoricalState, values: Any) -> None:
        if isinstance(state, _NumericState):
            state.update(values, self._rng)
        else:
            state.update(values)

    def update(self, chunk: pl.DataFrame) -> None:
        """Add a chunk of rows (features as columns, or a JSON ``features`` column)."""
        chunk = decode_features(chunk, list(self._states))
        n = chunk.height
        self.rows += n
        for name, state in self._states.items():
            values = chunk.get_column(name) if name in chunk.columns else pl.Series(name, [None] * n, dtype=pl.Float64)
            self._feed(state, values)
        if self._pred is not None and self.prediction_col in chunk.columns:
            self._feed(self._pred, chunk.get_column(self.prediction_col))
        if self._target is not None and self.target_col and self.target_col in chunk.columns:
            labels = chunk.get_column(self.target_col)
            if isinstance(self._target, _CategoricalState) and labels.dtype == pl.Boolean:
                labels = labels.cast(pl.Int64)  # the reference stores 0/1 labels as "0"/"1"
            self._feed(self._target, labels)

    def state_size(self) -> int:
        """Number of scalars held: bounded by columns × (bins + sample size + categories cap)."""
        total = sum(s.size() for s in self._states.values())
        total += self._pred.size() if self._pred is not None else 0
        total += self._target.size() if self._target is not None else 0
        return total

    def profile(self) -> ReferenceProfile:
        """The window's profile (same shape as a reference profile)."""
        return ReferenceProfile(
            columns={k: s.profile() for k, s in self._states.items()},
            prediction=self._pred.profile() if self._pred is not None else None,
            target=self._target.profile() if self._target is not None else None,
            n_rows=self.rows,
            bins=self.reference.bins,
            sample_size=self.reference.sample_size,
        )


def decode_features(frame: pl.DataFrame, feature_names: list[str]) -> pl.DataFrame:
    """Expand a JSON string column ``features`` into one column per feature (when they are not columns yet)."""
    if "features" not in frame.columns or frame.schema["features"] != pl.Utf8:
        return frame
    wanted = [f for f in feature_names if f not in frame.columns]
    if not wanted:
        return frame
    decoded = frame.get_column("features").str.json_decode(infer_schema_length=None)
    if not isinstance(decoded.dtype, pl.Struct):
        return frame
    fields = {f.name for f in decoded.dtype.fields}
    cols = [decoded.struct.field(f).alias(f) for f in wanted if f in fields]
    return frame.with_columns(cols) if cols else frame


@dataclass(frozen=True)
class LogWindow:
    """One window of the log: ``[start, end)`` by time, or rows ``[start_row, end_row)`` by count."""

    index: int
    start: datetime | None
    end: datetime | None
    rows: int

    def label(self) -> str:
        """Human label for reports."""
        if self.start is not None and self.end is not None:
            return f"{self.start.isoformat()} .. {self.end.isoformat()}"
        return f"window {self.index}"


def read_log(
    ws: Workspace,
    *,
    table: str = "logs.predictions",
    model: str | None = None,
    version: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    include_errors: bool = False,
) -> pl.LazyFrame:
    """A lazy scan of the prediction log, filtered by model, version and ``[start, end)``.

    Rows of failed model calls (``status = "error"``, no prediction) are left out unless
    ``include_errors`` (the availability SLI wants them; drift and performance do not). Rows
    older than the ``status`` column read it as null: served predictions.
    """
    lf = ws.lake.scan(table)
    names = lf.collect_schema().names()
    if not include_errors and "status" in names:
        lf = lf.filter(pl.col("status").cast(pl.Utf8).fill_null("ok") != "error")
    if model is not None and "model" in names:
        lf = lf.filter(pl.col("model") == model)
    if version is not None and "version" in names:
        lf = lf.filter(pl.col("version").cast(pl.Utf8) == str(version))
    if start is not None:
        lf = lf.filter(pl.col("ts") >= _utc(start))
    if end is not None:
        lf = lf.filter(pl.col("ts") < _utc(end))
    return lf


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def iter_batches(lf: pl.LazyFrame, chunk_size: int = 65536) -> Iterator[pl.DataFrame]:
    """Stream a lazy frame in chunks (the streaming engine keeps memory bounded)."""
    yield from lf.collect_batches(chunk_size=chunk_size)


def iter_window_profiles(
    chunks: Iterable[pl.DataFrame],
    reference: ReferenceProfile,
    *,
    by: str = "time",
    size: str | int = "1d",
    target_col: str | None = None,
    sample_size: int | None = -1,
) -> Iterator[tuple[LogWindow, ReferenceProfile]]:
    """Cut a stream of log chunks into windows and yield each window's profile once it is complete.

    Time windows are aligned to the epoch; a window is complete when a row at or after
    its end plus one window of allowed lateness has been seen (or the stream ends). Rows
    arriving for an already emitted window are counted in the log and dropped. Memory
    is one profiler per open window, whatever the stream's length.
    """
    open_: dict[int, WindowProfiler] = {}
    emitted: set[int] = set()
    late = 0
    if by == "count":
        n = int(size) if not isinstance(size, str) else int(size.strip())
        if n <= 0:
            raise ValidationFailed("a count window needs a positive size")
        seen = 0
        for chunk in chunks:
            pos = 0
            while pos < chunk.height:
                idx = seen // n
                take = min(n - seen % n, chunk.height - pos)
                prof = open_.setdefault(idx, WindowProfiler(reference, target_col=target_col, sample_size=sample_size, seed=idx))
                prof.update(chunk.slice(pos, take))
                pos += take
                seen += take
                if seen % n == 0:
                    yield LogWindow(idx, None, None, prof.rows), open_.pop(idx).profile()
        for idx in sorted(open_):
            yield LogWindow(idx, None, None, open_[idx].rows), open_[idx].profile()
        return
    step = parse_duration(size)
    step_us = int(step.total_seconds() * 1_000_000)
    if step_us <= 0:
        raise ValidationFailed("a time window needs a positive size")
    watermark = -(2**62)
    for chunk in chunks:
        if chunk.height == 0:
            continue
        ts = chunk.get_column("ts").cast(pl.Datetime("us", "UTC")).dt.epoch("us")
        keys = ts // step_us
        chunk = chunk.with_columns(keys.alias("__w"))
        for (key,), part in chunk.partition_by("__w", as_dict=True, maintain_order=True).items():
            k = int(key)  # type: ignore[call-overload]
            if k in emitted:
                late += part.height
                continue
            open_.setdefault(k, WindowProfiler(reference, target_col=target_col, sample_size=sample_size, seed=k)).update(part.drop("__w"))
        watermark = max(watermark, int(ts.max()))  # type: ignore[arg-type]
        for k in sorted(open_):
            if (k + 2) * step_us <= watermark:
                emitted.add(k)
                yield _time_window(k, step_us, open_[k].rows), open_.pop(k).profile()
    for k in sorted(open_):
        yield _time_window(k, step_us, open_[k].rows), open_[k].profile()
    if late:
        logger.warning("%d late log rows arrived after their window was emitted and were not counted", late)


def _time_window(k: int, step_us: int, rows: int) -> LogWindow:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return LogWindow(k, epoch + timedelta(microseconds=k * step_us), epoch + timedelta(microseconds=(k + 1) * step_us), rows)
