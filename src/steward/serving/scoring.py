"""Batch scoring: a lake table in, the same rows with a ``prediction`` column out, in bounded memory.

``engine="local"`` streams the input table through the lake (pinned to a version when given)
in record batches of ``chunk_rows``, encodes each chunk exactly as training did,
predicts with the native model and appends the chunk to the output table, so
memory holds one chunk at a time whatever the table's size. ``engine="ray"`` runs
the same per-chunk function with Ray Data (:meth:`Lake.ray_dataset` → ``map_batches``),
streaming results back to be written (the ``ray`` extra).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from steward._extras import optional_import
from steward._primitives import Progress, report_progress
from steward.data.lake import TableRef
from steward.errors import ValidationFailed
from steward.serving.registry_link import load_runtime
from steward.serving.runtime import NativeRuntime, frame_to_matrix

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["SCORE_STAGE", "ScoreResult", "parse_model_ref", "score"]

logger = logging.getLogger(__name__)

#: The stage scoring reports progress as.
SCORE_STAGE = "scoring"


@dataclass
class ScoreResult:
    """What a scoring run did."""

    model: str
    version: str
    input: str
    output: str
    rows: int
    chunks: int
    output_version: int | None
    seconds: float
    engine: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def parse_model_ref(text: str) -> tuple[str, str]:
    """``NAME@ALIAS`` (or ``NAME@3``, or ``NAME`` for the champion) → (name, alias or version)."""
    name, _, ref = text.partition("@")
    if not name:
        raise ValidationFailed(
            f"bad model reference {text!r}", hint="write NAME@ALIAS, e.g. flights@champion", details={"errors": [{"field": "model"}]}
        )
    return name, ref or "champion"


def _score_chunk(runtime: NativeRuntime, table: Any, version: str, scored_at: Any) -> Any:
    import polars as pl
    import pyarrow as pa

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    x = frame_to_matrix(runtime.schema, frame)
    preds: Any = runtime.predict(x) if len(x) else []
    n = table.num_rows
    return (
        table.append_column("prediction", pa.array(preds, pa.float64()))
        .append_column("model_version", pa.array([version] * n, pa.string()))
        .append_column("scored_at", pa.array([scored_at] * n, pa.timestamp("us", tz="UTC")))
    )


def score(
    ws: Workspace,
    model: str,
    input: str,
    output: str,
    *,
    chunk_rows: int = 50_000,
    engine: Literal["local", "ray"] = "local",
    progress: Progress | None = None,
) -> ScoreResult:
    """Score a lake table with a registered model and write the result to ``output``.

    Args:
        ws: The workspace.
        model: ``NAME@ALIAS`` or ``NAME@VERSION``.
        input: ``layer.table[@version]``.
        output: ``layer.table`` (replaced by the first chunk, then appended to).
        chunk_rows: Rows per chunk: the memory bound.
        engine: ``local`` (in-process, streaming) or ``ray`` (Ray Data).
        progress: Told ``(SCORE_STAGE, rows done, total rows)`` after each chunk.

    Raises:
        NotFound: the model, alias or table does not exist.
        ValidationFailed: the input lacks a feature column or has one of the wrong type.
    """
    from datetime import UTC, datetime

    name, alias = parse_model_ref(model)
    in_ref = TableRef.parse(input)
    out_ref = TableRef.parse(output)
    if out_ref.version is not None:
        raise ValidationFailed("the output cannot be pinned to a version", details={"errors": [{"field": "output"}]})
    if in_ref.version is None:
        in_ref = ws.lake.pin(in_ref)  # score (and record) exactly one version even if writers keep appending
    runtime = load_runtime(ws, name, alias)
    scored_at = datetime.now(UTC)
    t0 = time.perf_counter()
    done = chunks = 0
    out_version: int | None = None
    batches, total = (
        _ray_batches(ws, in_ref, runtime, chunk_rows, scored_at) if engine == "ray" else _local(ws, in_ref, runtime, chunk_rows, scored_at)
    )
    for table in batches:
        if table.num_rows == 0 and chunks > 0:
            continue
        out_version = ws.lake.write(
            out_ref, table, mode="overwrite" if chunks == 0 else "append", operation=f"score {name}@{runtime.version}"
        )
        chunks += 1
        done += table.num_rows
        report_progress(progress, SCORE_STAGE, done, total)
    seconds = time.perf_counter() - t0
    logger.info(
        "scored %d rows of %s with %s v%s into %s in %d chunks (%.1f s)", done, in_ref, name, runtime.version, out_ref, chunks, seconds
    )
    return ScoreResult(name, runtime.version, str(in_ref), str(out_ref), done, chunks, out_version, seconds, engine)


def _local(ws: Workspace, ref: TableRef, runtime: NativeRuntime, chunk_rows: int, scored_at: Any) -> tuple[Iterator[Any], int]:
    import pyarrow as pa

    batches, total = ws.lake.iter_batches(ref, batch_size=chunk_rows)

    def gen() -> Iterator[Any]:
        for batch in batches:
            yield _score_chunk(runtime, pa.Table.from_batches([batch]), runtime.version, scored_at)

    return gen(), total


def ray_concurrency() -> int:
    """Scoring tasks run at once on Ray (``STEWARD_RAY_CONCURRENCY``, default: the cluster's CPUs)."""
    import ray

    env = os.environ.get("STEWARD_RAY_CONCURRENCY")
    cpus = ray.cluster_resources().get("CPU", 1)  # type: ignore[no-untyped-call]
    return max(1, int(env)) if env else max(1, int(cpus))


def _ray_batches(ws: Workspace, ref: TableRef, runtime: NativeRuntime, chunk_rows: int, scored_at: Any) -> tuple[Iterator[Any], int]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    optional_import("ray", extra="ray", needed_for="batch scoring with --engine ray")
    import ray
    import ray.data

    if not ray.is_initialized():
        ray.init(num_cpus=min(2, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ds = ws.lake.ray_dataset(ref)
    total = ws.lake.count(ref)  # the row count from the Delta log, without a Ray pass
    version = runtime.version

    def fn(table: Any) -> Any:
        return _score_chunk(runtime, table, version, scored_at)

    scored = ds.map_batches(fn, batch_format="pyarrow", batch_size=chunk_rows, zero_copy_batch=False, concurrency=ray_concurrency())

    def gen() -> Iterator[Any]:
        import pyarrow as pa

        for batch in scored.iter_batches(batch_size=chunk_rows, batch_format="pyarrow"):
            yield batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])

    return gen(), total
