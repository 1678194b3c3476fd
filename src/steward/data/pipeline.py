"""The bronze → silver pipeline: land, gate by contract, quarantine, dedupe, merge late rows.

For each source, one run:

1. lands new landing files (or stream messages) into ``bronze.<source>``;
2. takes every batch in bronze not yet promoted (within the date range), checks
   it against the source's contract, merges failing rows into
   ``quarantine.<source>`` (one commit), drops duplicates by the contract key
   (within the batch, keep the first by ``_row``; keys already in silver from an
   earlier batch), and appends the rest to ``silver.<source>`` partitioned by
   ``_date`` (one commit); rows older than the newest partition are *late* and
   land in their own date partition;
3. records every batch's accounting, which always balances:
   ``rows_read == rows_silver + rows_quarantined + rows_duplicate``.

Crash safety: every step is idempotent and the batch status is written last.
A re-run after a crash at any point redoes only what is missing and computes
the same accounting (rows of the batch already in silver count as landed by
it, not as duplicates). ``STEWARD_FAULT`` (see :mod:`steward.data.faults`)
kills the process between steps for tests.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from steward._primitives import Progress, report_progress
from steward.data.contracts import Contract, batch_duplicates, check_contract, load_contract
from steward.data.faults import fault
from steward.data.ingest import IngestReport, file_date, in_range, land_files
from steward.data.lake import TableRef
from steward.data.quarantine import PARSE_RULE, QUARANTINE_SCHEMA, failures_frame, raw_json, write_quarantine
from steward.data.runs import (
    BATCH_PROMOTED,
    BATCH_REJECTED,
    batch_rows,
    finish_run,
    record_input,
    source_lock,
    start_run,
    upsert_batch,
)
from steward.data.streams import StreamReport, land_stream
from steward.errors import DataError
from steward.governance.audit import record_if_changed

if TYPE_CHECKING:
    from steward.backends.base import StreamBackend
    from steward.workspace import Workspace

__all__ = ["Accounting", "BatchAccounting", "PipelineReport", "SourceReport", "promote_source", "run_pipeline"]

logger = logging.getLogger(__name__)


SILVER_META = ("_batch_id", "_ingested_at", "_date")


@dataclass
class BatchAccounting:
    """Where every row of one batch went.

    Attributes:
        rows_read: Records read from the landing file or stream (``rows_bronze + rows_parse_failed``).
        rows_bronze: Rows in bronze.
        rows_parse_failed: Lines that could not be parsed (quarantined raw, rule ``parse``).
        rows_quarantined: All quarantined rows: parse failures plus contract failures.
        rows_duplicate: Valid rows dropped because their key was seen before.
        rows_silver: Rows in silver from this batch.
        rows_late: Of ``rows_silver``, rows older than the newest silver partition before them.
    """

    source: str
    batch_id: str
    origin: str
    rows_read: int = 0
    rows_bronze: int = 0
    rows_parse_failed: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_silver: int = 0
    rows_late: int = 0
    contract_version: str | None = None

    @property
    def balanced(self) -> bool:
        """The accounting identity: nothing lost, nothing counted twice."""
        return self.rows_read == self.rows_silver + self.rows_quarantined + self.rows_duplicate

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class Accounting:
    """Row totals over several batches."""

    batches: int = 0
    rows_read: int = 0
    rows_silver: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_late: int = 0

    @classmethod
    def of(cls, batches: Sequence[BatchAccounting]) -> Accounting:
        """Sum the accounting of batches."""
        return cls(
            batches=len(batches),
            rows_read=sum(b.rows_read for b in batches),
            rows_silver=sum(b.rows_silver for b in batches),
            rows_quarantined=sum(b.rows_quarantined for b in batches),
            rows_duplicate=sum(b.rows_duplicate for b in batches),
            rows_late=sum(b.rows_late for b in batches),
        )

    @property
    def balanced(self) -> bool:
        """``rows_read == rows_silver + rows_quarantined + rows_duplicate``."""
        return self.rows_read == self.rows_silver + self.rows_quarantined + self.rows_duplicate

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class SourceReport:
    """One source's part of a pipeline run."""

    source: str
    kind: str
    batches: list[BatchAccounting] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    ingest: IngestReport | None = None
    stream: StreamReport | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def totals(self) -> Accounting:
        """Totals over this source's promoted batches."""
        return Accounting.of(self.batches)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "source": self.source,
            "kind": self.kind,
            "totals": self.totals.to_dict(),
            "versions": dict(self.versions),
            "batches": [b.to_dict() for b in self.batches],
            "ingest": self.ingest.to_dict() if self.ingest else None,
            "stream": self.stream.to_dict() if self.stream else None,
            "warnings": list(self.warnings),
        }


@dataclass
class PipelineReport:
    """The outcome of one pipeline run: accounting per batch and source, and table versions.

    Attributes:
        run_id: The run (``pipeline_runs.run_id``; also on every Delta commit it made).
        sources: Per-source reports, in run order.
    """

    run_id: str
    sources: dict[str, SourceReport] = field(default_factory=dict)

    @property
    def batches(self) -> list[BatchAccounting]:
        """Every batch promoted by this run."""
        return [b for s in self.sources.values() for b in s.batches]

    @property
    def totals(self) -> Accounting:
        """Totals over every batch of the run."""
        return Accounting.of(self.batches)

    @property
    def versions(self) -> dict[str, int]:
        """``layer.name`` → latest version after the run, for every table of the run's sources."""
        return {t: v for s in self.sources.values() for t, v in s.versions.items()}

    def by_source(self) -> dict[str, dict[str, int]]:
        """Per-source totals with short keys: ``read, silver, quarantined, duplicates, late, batches``."""
        out: dict[str, dict[str, int]] = {}
        for name, s in self.sources.items():
            t = s.totals
            out[name] = {
                "read": t.rows_read,
                "silver": t.rows_silver,
                "quarantined": t.rows_quarantined,
                "duplicates": t.rows_duplicate,
                "late": t.rows_late,
                "batches": t.batches,
            }
        return out

    def refs(self) -> list[str]:
        """Pinned references (``silver.flights@3``) of every table after the run."""
        return [f"{t}@{v}" for t, v in sorted(self.versions.items())]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored as ``pipeline_runs.summary``)."""
        return {
            "run_id": self.run_id,
            "totals": self.totals.to_dict(),
            "versions": self.versions,
            "sources": {n: s.to_dict() for n, s in self.sources.items()},
        }


# -- the contract gate --------------------------------------------------------------
def _date_expr(contract: Contract) -> pl.Expr:
    if contract.event_time:
        return pl.col(contract.event_time).dt.strftime("%Y-%m-%d").fill_null(pl.col("_ingested_at").dt.strftime("%Y-%m-%d"))
    return pl.col("_ingested_at").dt.strftime("%Y-%m-%d")


def _pending_batches(
    ws: Workspace, source: str, bronze: TableRef | None, date_from: date | None, date_to: date | None
) -> tuple[dict[str, str], list[str], dict[str, dict[str, Any]]]:
    """Every batch not yet promoted (recorded ones and any found only in bronze after a crash).

    Returns ``(origin by batch id, batch ids in processing order, recorded batch rows)``.
    The order is by origin (landing files carry their date in the name), then by
    arrival (first ingest time), so that "first seen" and "late" follow the data's history.
    """
    known = batch_rows(ws.metadata, source)
    # a rejected file has nothing in bronze: it is reported by ingest, never promoted
    cand = {bid: str(r["origin"]) for bid, r in known.items() if r["status"] not in (BATCH_PROMOTED, BATCH_REJECTED)}
    arrived: dict[str, str] = {bid: str(r["created_at"]) for bid, r in known.items()}
    if bronze is not None:
        ids = ws.lake.scan(bronze).group_by("_batch_id", "_source_file").agg(pl.col("_ingested_at").min()).collect()
        for bid, origin, at in ids.iter_rows():
            if known.get(bid, {}).get("status") not in (BATCH_PROMOTED, BATCH_REJECTED):
                cand.setdefault(str(bid), str(origin))
                if at is not None:
                    arrived[str(bid)] = at.isoformat()

    def dated(origin: str) -> date | None:
        return None if origin.startswith("stream:") else file_date(Path(origin))

    pending = {b: o for b, o in cand.items() if in_range(dated(o), date_from, date_to)}
    order = sorted(pending, key=lambda b: (pending[b], arrived.get(b, ""), b))
    return pending, order, known


PROMOTE_CHUNK_ROWS = 128 * 1024
"""Rows of one bronze batch checked at a time: the contract gate's memory does not grow with the batch."""


def _batch_chunks(lf: pl.LazyFrame) -> Iterator[pl.DataFrame]:
    """A batch's bronze rows in ``_row`` order, in chunks of at most :data:`PROMOTE_CHUNK_ROWS` rows.

    Each chunk is its own scan of a ``_row`` range: Parquet statistics skip the
    other row groups, and nothing is read ahead (a streaming collect would buffer it).
    """
    bounds = lf.select(pl.col("_row").min().alias("lo"), pl.col("_row").max().alias("hi")).collect()
    lo, hi = bounds["lo"][0], bounds["hi"][0]
    if lo is None or hi is None:
        return
    for start in range(int(lo), int(hi) + 1, PROMOTE_CHUNK_ROWS):
        df = lf.filter(pl.col("_row").is_between(start, start + PROMOTE_CHUNK_ROWS, closed="left")).collect()
        if df.height:
            yield df.sort("_row")


def promote_source(
    ws: Workspace,
    source: str,
    contract: Contract,
    *,
    run_id: str,
    date_from: date | None = None,
    date_to: date | None = None,
    progress: Progress | None = None,
) -> tuple[list[BatchAccounting], list[str]]:
    """Gate every unpromoted bronze batch of a source into silver and quarantine (caller holds the source lock).

    Returns:
        The accounting of each promoted batch and the contract check's warnings.

    Raises:
        DataError: the accounting does not balance (a bug; nothing is written then).
    """
    lake, md = ws.lake, ws.metadata
    bronze, silver = TableRef("bronze", source), TableRef("silver", source)
    quarantine = TableRef("quarantine", source)
    bronze_ref = lake.pin(bronze) if lake.exists(bronze) else None
    pending, order, known = _pending_batches(ws, source, bronze_ref, date_from, date_to)
    if not pending:
        return [], []
    if bronze_ref is not None:
        record_input(md, run_id, str(bronze_ref))

    parse_failed: dict[str, int] = {}
    if lake.exists(quarantine):
        pq_ = (
            lake.scan(quarantine)
            .filter((pl.col("rule") == PARSE_RULE) & pl.col("_batch_id").is_in(order))
            .group_by("_batch_id")
            .agg(pl.col("_row").n_unique().alias("n"))
            .collect()
        )
        parse_failed = {str(b): int(n) for b, n in pq_.iter_rows()}

    key = list(contract.key)
    # silver as it was before any of these batches: the reference for duplicates and lateness
    seen: pl.DataFrame | None = None
    max_date: str | None = None
    in_silver: set[str] = set()
    if lake.exists(silver):
        s = lake.scan(silver).select([*key, "_batch_id", "_date"]).collect()
        mine = pl.col("_batch_id").is_in(order)
        in_silver = set(s.filter(mine)["_batch_id"].unique().to_list())
        before = s.filter(~mine)
        max_date = before["_date"].max() if before.height else None  # type: ignore[assignment]
        seen = before.select(key) if key else None

    now = datetime.now(UTC)
    date_expr = _date_expr(contract)
    silver_cols = [*contract.polars_schema(), *SILVER_META]
    to_quarantine: list[pl.DataFrame] = []
    results: list[BatchAccounting] = []
    # one entry per kind of warning: a backfill of old files would otherwise repeat 'stale' per batch
    warnings: dict[str, str] = {}
    unique_columns = [name for name, spec in contract.columns.items() if spec.unique]
    with tempfile.TemporaryDirectory(prefix="steward-promote-") as tmp:
        parts: list[Path] = []
        for i, bid in enumerate(order):
            report_progress(progress, f"{source}: contract gate", i, len(order))
            recorded = known.get(bid, {})
            acc = BatchAccounting(source=source, batch_id=bid, origin=pending[bid], contract_version=contract.version)
            acc.rows_parse_failed = parse_failed.get(bid, int(recorded.get("rows_parse_failed") or 0))
            acc.rows_quarantined = acc.rows_parse_failed
            newest_before = max_date  # lateness is against silver before this batch
            batch_rows = lake.scan(bronze_ref).filter(pl.col("_batch_id") == bid) if bronze_ref is not None else None
            chunks = _batch_chunks(batch_rows) if batch_rows is not None else []
            # `unique:` is a rule over the batch: the values repeated anywhere in it, read column by column
            repeated = batch_duplicates(batch_rows, contract) if batch_rows is not None and unique_columns else None
            for df in chunks:
                # one chunk at a time: memory is bounded by PROMOTE_CHUNK_ROWS, not by the batch
                acc.rows_bronze += df.height
                res = check_contract(df, contract, row_id="_row", duplicated=repeated)
                warnings.update({(w.split(":", 1)[0] if w.startswith("freshness:") else w): w for w in res.warnings})
                acc.rows_quarantined += res.rows_failed
                if res.failures.height:
                    bad_rows = set(res.failures["_row"].to_list())
                    raw = {int(r["_row"]): raw_json(r) for r in df.filter(pl.col("_row").is_in(bad_rows)).to_dicts()}
                    to_quarantine.append(
                        failures_frame(res.failures, batch_id=bid, raw_by_row=raw, contract_version=contract.version, at=now)
                    )
                valid = res.valid.sort("_row").with_columns(date_expr.alias("_date"))
                if key:
                    valid = valid.unique(subset=key, keep="first", maintain_order=True)
                    if seen is not None and seen.height:
                        valid = valid.join(seen, on=key, how="anti")
                acc.rows_silver += valid.height
                acc.rows_duplicate += res.rows_valid - valid.height
                if valid.height:
                    if newest_before is not None:
                        acc.rows_late += int(valid.filter(pl.col("_date") < newest_before).height)
                    newest = valid["_date"].max()
                    if newest is not None and (max_date is None or str(newest) > max_date):
                        max_date = str(newest)
                    if key:
                        seen = valid.select(key) if seen is None else pl.concat([seen, valid.select(key)], how="vertical_relaxed")
                    if bid not in in_silver:  # a crash after the silver commit: already landed, by this batch
                        part = Path(tmp) / f"{len(parts):06d}.parquet"
                        valid.select(silver_cols).write_parquet(part, compression="lz4")
                        parts.append(part)
            acc.rows_read = acc.rows_bronze + acc.rows_parse_failed
            if not acc.balanced:
                raise DataError(
                    f"accounting does not balance for batch {bid}: read {acc.rows_read} != silver {acc.rows_silver} "
                    f"+ quarantined {acc.rows_quarantined} + duplicates {acc.rows_duplicate}",
                    code="data.accounting",
                    hint="this is a bug; nothing was written for this run",
                )
            results.append(acc)
        report_progress(progress, f"{source}: contract gate", len(order), len(order))

        single = order[0] if len(order) == 1 else None
        q_rows = pl.concat(to_quarantine, how="vertical_relaxed") if to_quarantine else pl.DataFrame(schema=QUARANTINE_SCHEMA)
        qv, _ = write_quarantine(lake, source, q_rows, run_id=run_id, batch_id=single)
        fault("after_quarantine")
        sv: int | None = lake.version(silver) if lake.exists(silver) else None
        if parts:
            schema = pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")

            def batches() -> Iterator[pa.RecordBatch]:
                for part in parts:
                    for b in pq.ParquetFile(part).iter_batches(batch_size=65_536):
                        yield b.cast(schema)

            rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
            sv = lake.write_stream(
                silver, schema, batches, rows=rows, partition_by=["_date"], run_id=run_id, batch_id=single, operation="promote"
            )
    fault("after_silver")
    details = {"bronze": str(bronze_ref) if bronze_ref else None, "silver_version": sv, "quarantine_version": qv}
    for acc in results:
        counts: dict[str, Any] = {**acc.to_dict(), "details": details}
        upsert_batch(md, source, acc.batch_id, origin=acc.origin, run_id=run_id, status=BATCH_PROMOTED, counts=counts)
        # the audit trail records every batch that crossed the contract gate, with its accounting
        ws.audit.append(
            "ingest.batch",
            f"table:silver.{source}",
            inputs={"batch_id": acc.batch_id, "origin": acc.origin, "contract_version": contract.version},
            outputs={"accounting": acc.to_dict(), "silver_version": sv, "quarantine_version": qv},
            details={"run_id": run_id, "batch_id": acc.batch_id},
        )
    return results, list(warnings.values())


def _audit_contract(ws: Workspace, name: str, path: Path) -> None:
    """Append ``contract.register`` / ``contract.change`` when a contract's content differs from the last one seen."""
    record_if_changed(
        ws.audit,
        "contract.change",
        f"contract:{name}",
        path.read_bytes(),
        first_action="contract.register",
        field="contract",
        details={"path": str(path)},
    )


# -- runs ------------------------------------------------------------------------
def _versions(ws: Workspace, source: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for layer in ("bronze", "silver", "quarantine"):
        ref = TableRef(layer, source)
        if ws.lake.exists(ref):
            out[ref.table] = ws.lake.version(ref)
    return out


def _run_source(
    ws: Workspace,
    source: str,
    *,
    run_id: str,
    date_from: date | None,
    date_to: date | None,
    progress: Progress | None,
    stream_backend: StreamBackend | None,
    stream_consumer: str | None,
) -> SourceReport:
    spec = ws.spec.source(source)
    contract = load_contract(ws.spec.contract_path(spec.contract))
    _audit_contract(ws, spec.contract, ws.spec.contract_path(spec.contract))
    report = SourceReport(source=source, kind=spec.kind)
    if spec.kind == "files":
        report.ingest = land_files(
            ws,
            source,
            run_id=run_id,
            date_from=date_from,
            date_to=date_to,
            contract_version=contract.version,
            header_names=list(contract.polars_schema()),
            progress=progress,
        )
        for b in report.ingest.rejected:
            report.warnings.append(
                f"file {b.origin} quarantined as a whole (batch {b.batch_id}): {b.reason}; "
                f"see 'steward data quarantine --batch {b.batch_id}'"
            )
    else:
        report.stream = land_stream(ws, source, run_id=run_id, backend=stream_backend, consumer=stream_consumer, progress=progress)
    report.batches, gate_warnings = promote_source(
        ws, source, contract, run_id=run_id, date_from=date_from, date_to=date_to, progress=progress
    )
    report.warnings += gate_warnings
    report.versions = _versions(ws, source)
    return report


def run_pipeline(
    ws: Workspace,
    *,
    sources: Sequence[str] | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    progress: Progress | None = None,
    stream_backend: StreamBackend | None = None,
    stream_consumer: str | None = None,
) -> PipelineReport:
    """Run ingest and bronze → silver for some (default: all) sources as one recorded run.

    Re-running is idempotent: files already landed and batches already promoted
    are skipped, so nothing is committed twice. With a date range only landing
    files whose name carries a date in ``[date_from, date_to]`` are taken
    (undated files and stream batches always are): that is a backfill.

    Args:
        ws: The workspace.
        sources: Source names (default: every source in ``steward.yaml``, in order).
        date_from: First date of a backfill (inclusive).
        date_to: Last date of a backfill (inclusive).
        progress: Told ``(description, done, total)`` per stage; ``total`` None means unknown (a stream).
        stream_backend: The stream backend for ``redis_stream`` sources (default: from ``steward.yaml``).
        stream_consumer: Consumer name within the group (default: stable per host).

    Returns:
        The accounting per batch and source, the table versions and the run id.
        Also stored as ``pipeline_runs.summary``.

    Raises:
        SpecError: an unknown source or contract.
        LockHeld: another live run holds a source.
        DataError: the lake failed (after retries) or the accounting did not balance.
    """
    names = list(sources) if sources else list(ws.spec.sources)
    for n in names:
        ws.spec.source(n)  # unknown names fail before anything runs
    if date_from and date_to and date_from > date_to:
        raise DataError(f"--from {date_from} is after --to {date_to}", code="data.bad_range", hint="swap the dates")
    md = ws.metadata
    run_id = start_run(md, "pipeline", {"sources": names, "from": date_from, "to": date_to})
    report = PipelineReport(run_id=run_id)
    try:
        for name in names:
            with source_lock(md, name, run_id):
                report.sources[name] = _run_source(
                    ws,
                    name,
                    run_id=run_id,
                    date_from=date_from,
                    date_to=date_to,
                    progress=progress,
                    stream_backend=stream_backend,
                    stream_consumer=stream_consumer,
                )
            logger.info("pipeline %s: %s %s", run_id, name, report.sources[name].totals)
    except BaseException as exc:
        finish_run(md, run_id, "failed", report.to_dict(), error=str(exc) or type(exc).__name__)
        raise
    finish_run(md, run_id, "succeeded", report.to_dict())
    return report
