"""Landing files into bronze: idempotent, row-numbered, nothing lost.

Each landing file is one batch whose id is the hash of its bytes
(``<source>-<16 hex>``), so ingesting the same file twice changes nothing.
Bronze keeps rows as received (CSV and JSON-lines values as text, Parquet as
typed) plus ``_batch_id``, ``_source_file``, ``_row`` and ``_ingested_at``.
A line that cannot be parsed (wrong number of fields, broken quoting, bad
JSON, bytes not valid in the source's encoding) goes to
``quarantine.<source>`` raw, with its line number and reason; the rest of the
file still lands.

Memory is bounded whatever a file's size: files are hashed and parsed in
blocks (:mod:`steward.data._landing_read`), parsed chunks wait in temporary
Parquet parts, and bronze is written from a stream of them. A file that cannot
land as a whole (empty, binary, undeclared UTF-16, a parser failure, or more
unreadable rows than the source's ``max_bad_rows`` / ``max_bad_share``) is
quarantined as ONE record (rule ``file``, row -1) with its reason and counts,
recorded as a ``rejected`` batch, and the other files and sources land. A
rejected file is read again only when the source's reading settings change
(e.g. after declaring ``encoding: utf-16``).

Crash safety: the quarantine (parse failures) is merged first, then one bronze
commit holds every new file, then the batches are recorded. A crash between
steps is repaired by the next run: batches already in bronze are not written
again and the quarantine merge is keyed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from steward._primitives import Progress, canonical_json, report_progress
from steward.data._landing_read import BLOCK_BYTES, FileRejected, RowCap, read_chunks
from steward.data.contracts import load_contract
from steward.data.faults import fault
from steward.data.lake import TableRef
from steward.data.quarantine import FILE_ROW, FILE_RULE, PARSE_RULE, QUARANTINE_SCHEMA, write_quarantine
from steward.data.runs import BATCH_LANDED, BATCH_REJECTED, batch_rows, finish_run, source_lock, start_run, upsert_batch
from steward.errors import IngestError, SpecError

if TYPE_CHECKING:
    from steward.spec import SourceSpec
    from steward.workspace import Workspace

__all__ = [
    "META_COLUMNS",
    "IngestReport",
    "LandedBatch",
    "ParsedFile",
    "batch_id_for",
    "file_date",
    "ingest_source",
    "landing_files",
    "parse_file",
]

logger = logging.getLogger(__name__)


META_COLUMNS = ("_batch_id", "_source_file", "_row", "_ingested_at")
_DATE_RE = re.compile(r"(\d{4}-\d{2}-\d{2})")


def batch_id_for(source: str, data: bytes) -> str:
    """The batch id of a file: the source name and the first 16 hex chars of its SHA-256."""
    return f"{source}-{hashlib.sha256(data).hexdigest()[:16]}"


def file_date(path: Path) -> date | None:
    """The ``YYYY-MM-DD`` date a landing file's name carries, if any."""
    m = _DATE_RE.search(path.name)
    if not m:
        return None
    try:
        return date.fromisoformat(m.group(1))
    except ValueError:
        return None


def in_range(d: date | None, date_from: date | None, date_to: date | None) -> bool:
    """Whether a file dated ``d`` is inside ``[date_from, date_to]`` (undated files always are)."""
    if d is None:
        return True
    return not ((date_from is not None and d < date_from) or (date_to is not None and d > date_to))


def landing_files(ws: Workspace, source: str, *, date_from: date | None = None, date_to: date | None = None) -> list[Path]:
    """Landing files of a ``files`` source matching its pattern (and the date range), sorted by name."""
    spec = ws.spec.source(source)
    if spec.kind != "files" or not spec.path:
        raise SpecError(f"source {source!r} is not a files source", hint="only 'kind: files' sources have landing files")
    root = ws.spec.resolve(spec.path)
    if not root.is_dir():
        return []
    files = [p for p in root.glob(spec.pattern) if p.is_file() and not p.name.startswith(".")]
    return sorted((p for p in files if in_range(file_date(p), date_from, date_to)), key=lambda p: (p.name, str(p)))


@dataclass
class ParsedFile:
    """One landing file, parsed: bronze rows plus quarantined (unparsable) lines.

    Attributes:
        batch_id: Content-hash batch id.
        origin: The file, relative to the project directory.
        rows: Bronze rows (data columns + metadata columns).
        failures: Quarantine rows with rule ``parse``.
        rows_read: Records read (``rows.height + failures.height``).
    """

    batch_id: str
    origin: str
    rows: pl.DataFrame
    failures: pl.DataFrame
    rows_read: int


@dataclass
class LandedBatch:
    """What ingest did with one file.

    Attributes:
        status: ``new`` (landed now), ``recovered`` (found in bronze after a crash, now recorded),
            ``skipped`` (landed by an earlier run: nothing changed) or ``rejected`` (the whole file
            is quarantined as one record, rule ``file``; ``reason`` says why).
    """

    batch_id: str
    origin: str
    status: str
    rows_read: int = 0
    rows_bronze: int = 0
    rows_parse_failed: int = 0
    reason: str | None = None


@dataclass
class IngestReport:
    """The outcome of landing one source's files into bronze."""

    source: str
    run_id: str
    batches: list[LandedBatch] = field(default_factory=list)
    bronze_version: int | None = None
    quarantine_version: int | None = None

    @property
    def new_batches(self) -> list[LandedBatch]:
        """Batches landed (or recovered) by this run."""
        return [b for b in self.batches if b.status in ("new", "recovered")]

    @property
    def rejected(self) -> list[LandedBatch]:
        """Files quarantined as a whole by this run."""
        return [b for b in self.batches if b.status == "rejected"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "source": self.source,
            "run_id": self.run_id,
            "bronze_version": self.bronze_version,
            "quarantine_version": self.quarantine_version,
            "batches": [vars(b) for b in self.batches],
        }


# -- parsing -----------------------------------------------------------------------
def file_batch_id(source: str, path: Path) -> str:
    """:func:`batch_id_for` of a file, hashed in blocks (the file is never held in memory).

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(BLOCK_BYTES):
            h.update(block)
    return f"{source}-{h.hexdigest()[:16]}"


def _with_meta(rows: pl.DataFrame, bid: str, origin: str, at: datetime) -> pl.DataFrame:
    rows = rows.with_columns(
        pl.lit(bid, dtype=pl.String).alias("_batch_id"),
        pl.lit(origin, dtype=pl.String).alias("_source_file"),
        pl.lit(at, dtype=pl.Datetime("us", "UTC")).alias("_ingested_at"),
    )
    data_cols = [c for c in rows.columns if c not in META_COLUMNS]
    return rows.select([*data_cols, *META_COLUMNS])


def _failures(bid: str, bad: list[tuple[int, str, str]], at: datetime, rule: str = PARSE_RULE) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "_batch_id": [bid] * len(bad),
            "_row": [b[0] for b in bad],
            "rule": [rule] * len(bad),
            "column": [""] * len(bad),
            "value": [None] * len(bad),
            "reason": [b[1] for b in bad],
            "raw": [b[2] for b in bad],
            "contract_version": [None] * len(bad),
            "_quarantined_at": [at] * len(bad),
        },
        schema=QUARANTINE_SCHEMA,
    )


def _cap(spec: SourceSpec) -> RowCap:
    return RowCap(max_rows=spec.max_bad_rows, max_share=spec.max_bad_share)


def parse_file(
    path: Path,
    source: str,
    spec: SourceSpec,
    *,
    origin: str,
    ingested_at: datetime,
    header_names: list[str] | None = None,
    data: bytes | None = None,
) -> ParsedFile:
    """Parse one landing file into bronze rows and parse failures, in memory (small files; ingest streams).

    Args:
        path: The file.
        source: Source name (prefixes the batch id).
        spec: The source spec (format, encoding, CSV options, per-file cap).
        origin: How the file is named in bronze's ``_source_file``.
        ingested_at: The ingest timestamp (UTC) stamped on every row.
        header_names: Column names for a CSV without a header line (the contract's columns).
        data: The file's bytes when already read (default: read ``path``).

    Raises:
        IngestError: the file cannot land as a whole (empty, unreadable, wrong encoding, over the cap).
    """
    try:
        bid = batch_id_for(source, data) if data is not None else file_batch_id(source, path)
    except OSError as exc:
        raise IngestError(f"{path}: cannot read: {exc}") from None
    at = ingested_at.astimezone(UTC)
    frames: list[pl.DataFrame] = []
    bad: list[tuple[int, str, str]] = []
    try:
        for chunk in read_chunks(path, spec, source=source, header_names=header_names or [], cap=_cap(spec), data=data):
            frames.append(chunk.rows)
            bad += chunk.bad
    except FileRejected as exc:
        raise IngestError(f"{path}: {exc.reason}") from None
    rows = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame({"_row": []}, schema={"_row": pl.Int64()})
    rows = _with_meta(rows, bid, origin, at)
    failures = _failures(bid, bad, at)
    return ParsedFile(batch_id=bid, origin=origin, rows=rows, failures=failures, rows_read=rows.height + failures.height)


# -- landing ----------------------------------------------------------------------
def _origin(ws: Workspace, path: Path) -> str:
    try:
        return path.resolve().relative_to(ws.spec.base_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


@dataclass
class _Staged:
    """A file parsed to temporary Parquet parts, waiting for the one bronze commit."""

    batch_id: str
    origin: str
    parts: list[Path] = field(default_factory=list)
    rows_bronze: int = 0
    failures: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return self.rows_bronze + len(self.failures)


def _settings(spec: SourceSpec, header_names: list[str] | None) -> str:
    """A fingerprint of how a source reads files: a rejected file is tried again when it changes."""
    how: dict[str, Any] = {"format": spec.format, "encoding": spec.encoding, "csv": spec.csv.model_dump(), "header": header_names}
    how |= {"max_bad_rows": spec.max_bad_rows, "max_bad_share": spec.max_bad_share}
    return hashlib.sha256(canonical_json(how).encode()).hexdigest()[:16]


def _details(rec: dict[str, Any]) -> dict[str, Any]:
    raw = rec.get("details")
    if isinstance(raw, dict):
        return raw
    try:
        out = json.loads(raw or "{}")
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def _stage(path: Path, stage: _Staged, spec: SourceSpec, *, source: str, header_names: list[str], at: datetime, tmp: Path) -> None:
    """Parse ``path`` chunk by chunk into Parquet parts under ``tmp`` (memory: one chunk).

    Raises:
        FileRejected: the file cannot land as a whole (its parts are removed).
    """
    try:
        for k, chunk in enumerate(read_chunks(path, spec, source=source, header_names=header_names, cap=_cap(spec))):
            stage.failures += chunk.bad
            if chunk.rows.height:
                part = tmp / f"{stage.batch_id}-{k:06d}.parquet"
                _with_meta(chunk.rows, stage.batch_id, stage.origin, at).write_parquet(part, compression="lz4")
                stage.parts.append(part)
                stage.rows_bronze += chunk.rows.height
    except FileRejected:
        for part in stage.parts:
            part.unlink(missing_ok=True)
        raise


def _bronze_stream(staged: list[_Staged]) -> tuple[pa.Schema, Callable[[], Iterator[pa.RecordBatch]]]:
    """One schema over every staged part (data columns in first-seen order, then metadata) and a stream of batches."""
    parts = [p for s in staged for p in s.parts]
    unified = pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")
    fields = [f for f in unified if f.name not in META_COLUMNS] + [unified.field(c) for c in META_COLUMNS]
    schema = pa.schema(fields)

    def batches() -> Iterator[pa.RecordBatch]:
        for part in parts:
            for b in pq.ParquetFile(part).iter_batches(batch_size=65_536):
                cols = [b.column(f.name).cast(f.type) if f.name in b.schema.names else pa.nulls(b.num_rows, f.type) for f in schema]
                yield pa.RecordBatch.from_arrays(cols, schema=schema)

    return schema, batches


def _file_record(bid: str, origin: str, rej: FileRejected, at: datetime) -> pl.DataFrame:
    raw = canonical_json({"file": origin, "rows_read": rej.rows_read, "rows_failed": rej.rows_failed, "first_reasons": rej.first_reasons})
    return _failures(bid, [(FILE_ROW, rej.reason, raw)], at, rule=FILE_RULE)


def land_files(
    ws: Workspace,
    source: str,
    *,
    run_id: str,
    date_from: date | None = None,
    date_to: date | None = None,
    contract_version: str | None = None,
    header_names: list[str] | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Land a source's new files into bronze (caller holds the source lock and owns the run).

    Each file is parsed in bounded chunks to temporary Parquet parts; a file
    that cannot land as a whole is quarantined as one record (rule ``file``)
    and the others go on. Then one quarantine merge (parse failures and
    rejected files), one bronze commit streaming every part, and the batches
    are recorded.
    """
    spec = ws.spec.source(source)
    lake = ws.lake
    bronze = TableRef("bronze", source)
    report = IngestReport(source=source, run_id=run_id)
    files = landing_files(ws, source, date_from=date_from, date_to=date_to)
    known = batch_rows(ws.metadata, source)
    settings = _settings(spec, header_names)
    now = datetime.now(UTC)
    staged: list[_Staged] = []
    rejected: list[tuple[str, str, FileRejected]] = []
    unreadable: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="steward-ingest-") as tmp:
        for i, path in enumerate(files):
            report_progress(progress, f"{source}: reading landing files", i, len(files))
            origin = _origin(ws, path)
            try:
                bid = file_batch_id(source, path)
            except OSError as exc:
                # no content to hash: the batch id names the path, and nothing is recorded, so it is tried again
                bid = batch_id_for(source, f"unreadable:{origin}".encode())
                unreadable.add(bid)
                rejected.append((bid, origin, FileRejected(f"cannot read: {exc}")))
                continue
            rec = known.get(bid)
            done = rec is not None and (rec["status"] != BATCH_REJECTED or _details(rec).get("settings") == settings)
            if done or any(s.batch_id == bid for s in staged) or any(r[0] == bid for r in rejected):
                report.batches.append(LandedBatch(bid, origin, "skipped"))
                continue
            stage = _Staged(bid, origin)
            try:
                _stage(path, stage, spec, source=source, header_names=header_names or [], at=now, tmp=Path(tmp))
            except FileRejected as exc:
                logger.warning("%s: %s quarantined as a whole: %s", source, origin, exc.reason)
                rejected.append((bid, origin, exc))
                continue
            staged.append(stage)
        report_progress(progress, f"{source}: reading landing files", len(files), len(files))
        if not staged and not rejected:
            report.bronze_version = lake.version(bronze) if lake.exists(bronze) else None
            return report
        frames = [_failures(s.batch_id, s.failures, now) for s in staged if s.failures]
        frames += [_file_record(bid, origin, rej, now) for bid, origin, rej in rejected]
        failures = pl.concat(frames) if frames else pl.DataFrame(schema=QUARANTINE_SCHEMA)
        failures = failures.with_columns(pl.lit(contract_version, dtype=pl.String).alias("contract_version"))
        ids = [s.batch_id for s in staged] + [r[0] for r in rejected]
        qv, _ = write_quarantine(lake, source, failures, run_id=run_id, batch_id=ids[0] if len(ids) == 1 else None)
        report.quarantine_version = qv
        # batches that reached bronze before a crash are not written again
        in_bronze: set[str] = set()
        if staged and lake.exists(bronze):
            mine = [s.batch_id for s in staged]
            found = lake.scan(bronze).select("_batch_id").filter(pl.col("_batch_id").is_in(mine)).unique().collect()
            in_bronze = set(found["_batch_id"].to_list())
        new = [s for s in staged if s.batch_id not in in_bronze and s.parts]
        if new:
            schema, batches = _bronze_stream(new)
            report.bronze_version = lake.write_stream(
                bronze,
                schema,
                batches,
                rows=sum(s.rows_bronze for s in new),
                run_id=run_id,
                batch_id=new[0].batch_id if len(new) == 1 else None,
                operation="ingest",
            )
            fault("after_bronze")
        else:
            report.bronze_version = lake.version(bronze) if lake.exists(bronze) else None
    for s in staged:
        counts: dict[str, Any] = {"rows_read": s.rows_read, "rows_bronze": s.rows_bronze, "rows_parse_failed": len(s.failures)}
        counts["contract_version"] = contract_version
        upsert_batch(ws.metadata, source, s.batch_id, origin=s.origin, run_id=run_id, status=BATCH_LANDED, counts=counts)
        status = "recovered" if s.batch_id in in_bronze else "new"
        report.batches.append(LandedBatch(s.batch_id, s.origin, status, s.rows_read, s.rows_bronze, len(s.failures)))
    for bid, origin, rej in rejected:
        if bid not in unreadable:
            counts = {"rows_read": rej.rows_read, "rows_parse_failed": rej.rows_failed, "contract_version": contract_version}
            counts["details"] = {"reason": rej.reason, "settings": settings}
            upsert_batch(ws.metadata, source, bid, origin=origin, run_id=run_id, status=BATCH_REJECTED, counts=counts)
        report.batches.append(LandedBatch(bid, origin, "rejected", rej.rows_read, 0, rej.rows_failed, reason=rej.reason))
    return report


def ingest_source(
    ws: Workspace,
    source: str,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Land a files source's new landing files into ``bronze.<source>`` as its own run.

    Re-ingesting a file already landed changes nothing (no commit anywhere).
    A file that cannot land as a whole is quarantined as one record and listed
    in :attr:`IngestReport.rejected`; it does not stop the other files.
    For a ``redis_stream`` source use :func:`steward.data.streams.consume_stream`.

    Args:
        ws: The workspace.
        source: Source name from ``steward.yaml``.
        date_from: Only files whose name carries a date on or after this (undated files always).
        date_to: Only files dated on or before this.
        progress: Told ``(description, files read, files)``.

    Raises:
        SpecError: unknown source, or not a files source.
        LockHeld: another run is processing this source.
    """
    spec = ws.spec.source(source)
    if spec.kind != "files":
        raise SpecError(f"source {source!r} is a {spec.kind} source", hint="consume streams with 'steward pipeline run --source NAME'")
    contract = load_contract(ws.spec.contract_path(spec.contract))
    md = ws.metadata
    run_id = start_run(md, "ingest", {"source": source, "from": date_from, "to": date_to})
    try:
        with source_lock(md, source, run_id):
            report = land_files(
                ws,
                source,
                run_id=run_id,
                date_from=date_from,
                date_to=date_to,
                contract_version=contract.version,
                header_names=list(contract.polars_schema()),
                progress=progress,
            )
    except BaseException as exc:
        finish_run(md, run_id, "failed", {}, error=str(exc) or type(exc).__name__)
        raise
    finish_run(md, run_id, "succeeded", report.to_dict())
    return report
