"""Stream sources: a consumer group lands messages into bronze, exactly once in effect.

Delivery is at-least-once (Redis Streams, or the embedded SQLite queue with the
same semantics). Landing is idempotent: bronze rows are keyed on the message id
(``_message_id``) and written with a merge-insert, and a message is
acknowledged only after its Delta commit. A consumer that dies before XACK
leaves its messages pending; the next consumer re-reads its own pending
messages or claims idle ones (XAUTOCLAIM), and the merge drops what already
landed. Stream batches then go through the same contract gate to silver.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from steward._primitives import Progress, report_progress
from steward.backends.base import StreamBackend, StreamEntry
from steward.data.faults import fault
from steward.data.lake import TableRef
from steward.data.runs import BATCH_LANDED, finish_run, source_lock, start_run, upsert_batch
from steward.errors import SpecError

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["StreamReport", "consume_stream", "land_stream", "publish"]

logger = logging.getLogger(__name__)


@dataclass
class StreamReport:
    """What one consumer pass did.

    Attributes:
        delivered: Messages handed to this consumer (new, its own pending, or claimed).
        landed: Messages that became new bronze rows.
        redelivered: Messages already in bronze (a redelivery), dropped; ``delivered == landed + redelivered``.
        acked: Messages acknowledged.
        batches: Batch ids created (one per read with new rows).
    """

    source: str
    stream: str
    group: str
    consumer: str
    delivered: int = 0
    landed: int = 0
    redelivered: int = 0
    acked: int = 0
    batches: list[str] = field(default_factory=list)
    bronze_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(vars(self))


def _batch_id(source: str, ids: Sequence[str]) -> str:
    return f"{source}-{hashlib.sha256(chr(10).join(ids).encode()).hexdigest()[:16]}"


def _frame(source: str, stream: str, entries: list[StreamEntry], batch_id: str, at: datetime) -> pl.DataFrame:
    names: dict[str, None] = {}
    for _, fields in entries:
        for k in fields:
            if not k.startswith("_"):
                names.setdefault(k, None)
    data: dict[str, pl.Series] = {c: pl.Series(c, [f.get(c) for _, f in entries], dtype=pl.String) for c in names}
    df = pl.DataFrame(data) if data else pl.DataFrame(height=len(entries))
    return df.with_columns(
        pl.Series("_message_id", [i for i, _ in entries], dtype=pl.String),
        pl.lit(batch_id, dtype=pl.String).alias("_batch_id"),
        pl.lit(f"stream:{stream}", dtype=pl.String).alias("_source_file"),
        pl.Series("_row", range(1, len(entries) + 1), dtype=pl.Int64),
        pl.lit(at, dtype=pl.Datetime("us", "UTC")).alias("_ingested_at"),
    )


def _stream_spec(ws: Workspace, source: str) -> tuple[str, str]:
    spec = ws.spec.source(source)
    if spec.kind != "redis_stream" or not spec.stream:
        raise SpecError(f"source {source!r} is not a stream source", hint="stream sources have 'kind: redis_stream' and 'stream: KEY'")
    return spec.stream, spec.group


def default_consumer() -> str:
    """A consumer name stable across restarts on this host, so a restarted consumer re-reads its own pending messages."""
    return f"steward-{socket.gethostname()}"


def land_stream(
    ws: Workspace,
    source: str,
    *,
    run_id: str,
    backend: StreamBackend | None = None,
    consumer: str | None = None,
    count: int = 500,
    claim_idle_ms: int = 30_000,
    max_messages: int | None = None,
    progress: Progress | None = None,
) -> StreamReport:
    """Land pending and new messages of a stream source into bronze (caller holds the source lock and owns the run).

    Order: this consumer's own pending messages (it died before acking), then
    messages other consumers left idle for ``claim_idle_ms`` (XAUTOCLAIM), then
    new ones, until none are left or ``max_messages`` were delivered. Each read
    is one merge-insert commit keyed on the message id, then recorded, then acked.
    """
    stream, group = _stream_spec(ws, source)
    be = backend or ws.stream
    name = consumer or default_consumer()
    report = StreamReport(source=source, stream=stream, group=group, consumer=name)
    bronze = TableRef("bronze", source)
    be.ensure_group(stream, group)
    for phase in ("pending", "claim", "new"):
        while max_messages is None or report.delivered < max_messages:
            n = count if max_messages is None else min(count, max_messages - report.delivered)
            if phase == "pending":
                entries = be.read(stream, group, name, count=n, pending=True)
            elif phase == "claim":
                entries = be.claim(stream, group, name, min_idle_ms=claim_idle_ms, count=n)
            else:
                entries = be.read(stream, group, name, count=n)
            if not entries:
                break
            _land(ws, source, stream, group, be, entries, run_id=run_id, report=report)
            report_progress(progress, f"{source}: stream {stream}", report.delivered, None)
    report.bronze_version = ws.lake.version(bronze) if ws.lake.exists(bronze) else None
    return report


def _land(
    ws: Workspace, source: str, stream: str, group: str, be: StreamBackend, entries: list[StreamEntry], *, run_id: str, report: StreamReport
) -> None:
    ids = [i for i, _ in entries]
    bid = _batch_id(source, ids)
    df = _frame(source, stream, entries, bid, datetime.now(UTC))
    _, inserted = ws.lake.merge_insert(
        TableRef("bronze", source), df, keys=["_message_id"], run_id=run_id, batch_id=bid, operation="stream"
    )
    if inserted:
        upsert_batch(
            ws.metadata,
            source,
            bid,
            origin=f"stream:{stream}",
            run_id=run_id,
            status=BATCH_LANDED,
            counts={"rows_read": inserted, "rows_bronze": inserted},
        )
        report.batches.append(bid)
    fault("before_ack")
    report.acked += be.ack(stream, group, ids)
    report.delivered += len(entries)
    report.landed += inserted
    report.redelivered += len(entries) - inserted
    logger.debug("stream %s: %d delivered, %d new, batch %s", stream, len(entries), inserted, bid)


def consume_stream(
    ws: Workspace,
    source: str,
    *,
    backend: StreamBackend | None = None,
    consumer: str | None = None,
    count: int = 500,
    claim_idle_ms: int = 30_000,
    max_messages: int | None = None,
    progress: Progress | None = None,
) -> StreamReport:
    """Land a stream source's messages into ``bronze.<source>`` as its own run (no silver; see :func:`run_pipeline`).

    Args:
        ws: The workspace.
        source: A ``redis_stream`` source from ``steward.yaml``.
        backend: The stream backend (default: Redis at ``storage.stream_url``, else the SQLite queue).
        consumer: Consumer name in the group (default: stable per host).
        count: Messages per read (and per bronze commit).
        claim_idle_ms: Claim other consumers' messages pending at least this long.
        max_messages: Stop after this many deliveries.
        progress: Told ``(description, messages delivered, None)`` (a stream has no known total).
    """
    md = ws.metadata
    run_id = start_run(md, "stream", {"source": source, "consumer": consumer})
    try:
        with source_lock(md, source, run_id):
            report = land_stream(
                ws,
                source,
                run_id=run_id,
                backend=backend,
                consumer=consumer,
                count=count,
                claim_idle_ms=claim_idle_ms,
                max_messages=max_messages,
                progress=progress,
            )
    except BaseException as exc:
        finish_run(md, run_id, "failed", {}, error=str(exc) or type(exc).__name__)
        raise
    finish_run(md, run_id, "succeeded", report.to_dict())
    return report


def publish(ws: Workspace, source: str, records: Sequence[Mapping[str, Any]], *, backend: StreamBackend | None = None) -> list[str]:
    """Append records to a stream source's stream (values sent as text; None as empty); return message ids."""
    stream, group = _stream_spec(ws, source)
    be = backend or ws.stream
    be.ensure_group(stream, group)
    return [be.add(stream, {str(k): "" if v is None else str(v) for k, v in r.items()}) for r in records]
