"""Landing files into bronze: idempotent, row-numbered, nothing lost.

Each landing file is one batch whose id is the hash of its bytes
(``<source>-<16 hex>``), so ingesting the same file twice changes nothing.
Bronze keeps rows as received (CSV and JSON-lines values as text, Parquet as
typed) plus ``_batch_id``, ``_source_file``, ``_row`` and ``_ingested_at``.
A line that cannot be parsed (wrong number of fields, broken quoting, bad
JSON) goes to ``quarantine.<source>`` raw, with its line number and reason;
the rest of the file still lands.

Crash safety: the quarantine (parse failures) is merged first, then one bronze
commit holds every new file, then the batches are recorded. A crash between
steps is repaired by the next run: batches already in bronze are not written
again and the quarantine merge is keyed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from steward._primitives import Progress, report_progress
from steward.data.faults import fault
from steward.data.lake import TableRef
from steward.data.quarantine import PARSE_RULE, QUARANTINE_SCHEMA, write_quarantine
from steward.data.runs import BATCH_LANDED, batch_rows, finish_run, source_lock, start_run, upsert_batch
from steward.errors import IngestError, SpecError

if TYPE_CHECKING:
    from steward.spec import CsvOptions, SourceSpec
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
_MAX_RECORD_LINES = 100  # a quoted field may span lines; past this, the opening line is malformed


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
        status: ``new`` (landed now), ``recovered`` (found in bronze after a crash, now recorded)
            or ``skipped`` (landed by an earlier run: nothing changed).
    """

    batch_id: str
    origin: str
    status: str
    rows_read: int = 0
    rows_bronze: int = 0
    rows_parse_failed: int = 0


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
        return [b for b in self.batches if b.status != "skipped"]

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
def _split_lines(text: str) -> list[str]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _parse_one(record: str, delimiter: str) -> list[str]:
    rows = list(csv.reader(io.StringIO(record, newline=""), delimiter=delimiter, strict=True))
    if len(rows) != 1:
        raise csv.Error(f"expected one record, found {len(rows)}")
    return rows[0]


def _parse_csv(
    data: bytes, opts: CsvOptions, names_if_no_header: list[str]
) -> tuple[list[str], dict[str, list[Any]], list[int], list[tuple[int, str, str]]]:
    """Parse CSV text tolerantly.

    Returns ``(names, columns, row_numbers, bad)`` where ``bad`` holds
    ``(row_number, reason, raw)``. Row numbers are 1-based data line numbers
    (the header is line 0); the file line is ``row + 1`` with a header.
    """
    text = data.decode("utf-8-sig", errors="replace")
    lines = _split_lines(text)
    d = opts.delimiter
    offset = 1 if opts.header else 0
    if opts.header:
        if not lines:
            raise IngestError("the file is empty (no header line)", hint="a CSV source with 'header: true' needs a header line")
        try:
            names = [n.strip() for n in _parse_one(lines[0], d)]
        except csv.Error as exc:
            raise IngestError(f"the header line cannot be parsed: {exc}", hint="fix the first line of the file") from None
        if any(not n for n in names) or len(set(names)) != len(names):
            raise IngestError(f"the header has empty or repeated column names: {names}", hint="give every column a unique name")
    else:
        names = list(names_if_no_header)
    n = len(names)
    nulls = set(opts.null_values)
    cols: dict[str, list[Any]] = {c: [] for c in names}
    rownums: list[int] = []
    bad: list[tuple[int, str, str]] = []

    def good(row: int, fields: list[str]) -> None:
        rownums.append(row)
        for c, v in zip(names, fields, strict=True):
            cols[c].append(None if v in nulls else v)

    quoted = '"' in text
    i = offset
    while i < len(lines):
        line = lines[i]
        row = i + 1 - offset
        if not line.strip():
            i += 1
            continue
        if not quoted:
            # fast path: without quotes a record is one line split on the delimiter
            fields = line.split(d)
            if len(fields) == n:
                good(row, fields)
            else:
                bad.append((row, f"line {i + 1}: expected {n} fields, found {len(fields)}", line))
            i += 1
            continue
        record, j = line, i
        while record.count('"') % 2 == 1 and j + 1 < len(lines) and j - i < _MAX_RECORD_LINES:
            j += 1
            record += "\n" + lines[j]
        try:
            if record.count('"') % 2 == 1:
                raise csv.Error("unterminated quoted field")
            fields = _parse_one(record, d)
        except csv.Error as exc:
            if j > i:
                # the join across lines did not help: only the opening line is broken
                try:
                    _parse_one(line, d)
                    reason = "unterminated quoted field"
                except csv.Error as exc2:
                    reason = str(exc2)
                bad.append((row, f"line {i + 1}: broken quoting ({reason})", line))
                i += 1
            else:
                bad.append((row, f"line {i + 1}: broken quoting ({exc})", line))
                i += 1
            continue
        if len(fields) != n:
            bad.append((row, f"line {i + 1}: expected {n} fields, found {len(fields)}", record))
        else:
            good(row, fields)
        i = j + 1
    return names, cols, rownums, bad


def _jsonl_value(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False)


def _parse_jsonl(data: bytes) -> tuple[list[str], dict[str, list[Any]], list[int], list[tuple[int, str, str]]]:
    text = data.decode("utf-8-sig", errors="replace")
    records: list[tuple[int, dict[str, Any]]] = []
    bad: list[tuple[int, str, str]] = []
    names: dict[str, None] = {}
    for i, line in enumerate(_split_lines(text)):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            bad.append((i + 1, f"line {i + 1}: not valid JSON ({exc})", line))
            continue
        if not isinstance(obj, dict):
            bad.append((i + 1, f"line {i + 1}: a JSON line must be an object, got {type(obj).__name__}", line))
            continue
        for k in obj:
            names.setdefault(str(k), None)
        records.append((i + 1, obj))
    cols: dict[str, list[Any]] = {c: [_jsonl_value(r.get(c)) for _, r in records] for c in names}
    return list(names), cols, [r for r, _ in records], bad


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
    """Parse one landing file into bronze rows and parse failures.

    Args:
        path: The file.
        source: Source name (prefixes the batch id).
        spec: The source spec (format, CSV options).
        origin: How the file is named in bronze's ``_source_file``.
        ingested_at: The ingest timestamp (UTC) stamped on every row.
        header_names: Column names for a CSV without a header line (the contract's columns).
        data: The file's bytes when already read (default: read ``path``).

    Raises:
        IngestError: the file cannot be read at all.
    """
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IngestError(f"{path}: cannot read: {exc}") from None
    bid = batch_id_for(source, data)
    at = ingested_at.astimezone(UTC)
    bad: list[tuple[int, str, str]] = []
    try:
        if spec.format == "parquet":
            try:
                typed = pl.read_parquet(io.BytesIO(data))
            except Exception as exc:  # polars raises several error types for a corrupt file
                raise IngestError(
                    f"{path}: not a readable Parquet file: {exc}", hint="re-export the file or remove it from the landing directory"
                ) from None
            rows = typed.with_columns(pl.int_range(0, typed.height, dtype=pl.Int64).alias("_row"))
        else:
            if spec.format == "csv":
                names, cols, rownums, bad = _parse_csv(data, spec.csv, header_names or [])
            else:
                names, cols, rownums, bad = _parse_jsonl(data)
            rows = pl.DataFrame({c: pl.Series(c, cols[c], dtype=pl.String) for c in names}) if names else pl.DataFrame(height=len(rownums))
            rows = rows.with_columns(pl.Series("_row", rownums, dtype=pl.Int64))
    except IngestError as exc:
        if str(path) not in exc.message:
            raise IngestError(f"{path}: {exc.message}", hint=exc.hint) from None
        raise
    rows = rows.with_columns(
        pl.lit(bid, dtype=pl.String).alias("_batch_id"),
        pl.lit(origin, dtype=pl.String).alias("_source_file"),
        pl.lit(at, dtype=pl.Datetime("us", "UTC")).alias("_ingested_at"),
    )
    data_cols = [c for c in rows.columns if c not in META_COLUMNS]
    rows = rows.select([*data_cols, *META_COLUMNS])
    failures = pl.DataFrame(
        {
            "_batch_id": [bid] * len(bad),
            "_row": [b[0] for b in bad],
            "rule": [PARSE_RULE] * len(bad),
            "column": [""] * len(bad),
            "value": [None] * len(bad),
            "reason": [b[1] for b in bad],
            "raw": [b[2] for b in bad],
            "contract_version": [None] * len(bad),
            "_quarantined_at": [at] * len(bad),
        },
        schema=QUARANTINE_SCHEMA,
    )
    return ParsedFile(batch_id=bid, origin=origin, rows=rows, failures=failures, rows_read=rows.height + failures.height)


# -- landing ----------------------------------------------------------------------
def _origin(ws: Workspace, path: Path) -> str:
    try:
        return path.resolve().relative_to(ws.spec.base_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


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

    One quarantine merge (parse failures), then one bronze commit for all new
    files, then the batches are recorded as landed.
    """
    spec = ws.spec.source(source)
    lake = ws.lake
    bronze = TableRef("bronze", source)
    report = IngestReport(source=source, run_id=run_id)
    files = landing_files(ws, source, date_from=date_from, date_to=date_to)
    known = batch_rows(ws.metadata, source)
    now = datetime.now(UTC)
    parsed: list[ParsedFile] = []
    for i, path in enumerate(files):
        report_progress(progress, f"{source}: reading landing files", i, len(files))
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IngestError(f"{path}: cannot read: {exc}") from None
        bid = batch_id_for(source, data)
        origin = _origin(ws, path)
        if bid in known or any(p.batch_id == bid for p in parsed):
            report.batches.append(LandedBatch(bid, origin, "skipped"))
            continue
        pf = parse_file(path, source, spec, origin=origin, ingested_at=now, header_names=header_names, data=data)
        pf.failures = pf.failures.with_columns(pl.lit(contract_version, dtype=pl.String).alias("contract_version"))
        parsed.append(pf)
    report_progress(progress, f"{source}: reading landing files", len(files), len(files))
    if not parsed:
        report.bronze_version = lake.version(bronze) if lake.exists(bronze) else None
        return report
    # batches that reached bronze before a crash are not written again
    in_bronze = set(lake.scan(bronze).select("_batch_id").unique().collect()["_batch_id"].to_list()) if lake.exists(bronze) else set()
    failures = pl.concat([p.failures for p in parsed]) if parsed else pl.DataFrame(schema=QUARANTINE_SCHEMA)
    qv, _ = write_quarantine(lake, source, failures, run_id=run_id, batch_id=parsed[0].batch_id if len(parsed) == 1 else None)
    report.quarantine_version = qv
    new_rows = [p.rows for p in parsed if p.batch_id not in in_bronze and p.rows.height]
    if new_rows:
        frame = pl.concat(new_rows, how="diagonal_relaxed") if len(new_rows) > 1 else new_rows[0]
        only = [p.batch_id for p in parsed if p.batch_id not in in_bronze]
        report.bronze_version = lake.write(bronze, frame, run_id=run_id, batch_id=only[0] if len(only) == 1 else None, operation="ingest")
        fault("after_bronze")
    else:
        report.bronze_version = lake.version(bronze) if lake.exists(bronze) else None
    for p in parsed:
        upsert_batch(
            ws.metadata,
            source,
            p.batch_id,
            origin=p.origin,
            run_id=run_id,
            status=BATCH_LANDED,
            counts={
                "rows_read": p.rows_read,
                "rows_bronze": p.rows.height,
                "rows_parse_failed": p.failures.height,
                "contract_version": contract_version,
            },
        )
        report.batches.append(
            LandedBatch(
                p.batch_id, p.origin, "recovered" if p.batch_id in in_bronze else "new", p.rows_read, p.rows.height, p.failures.height
            )
        )
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
    For a ``redis_stream`` source use :func:`steward.data.streams.consume_stream`.

    Args:
        ws: The workspace.
        source: Source name from ``steward.yaml``.
        date_from: Only files whose name carries a date on or after this (undated files always).
        date_to: Only files dated on or before this.
        progress: Told ``(description, files read, files)``.

    Raises:
        SpecError: unknown source, or not a files source.
        IngestError: a file cannot be read at all.
        LockHeld: another run is processing this source.
    """
    from steward.data.contracts import load_contract

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
