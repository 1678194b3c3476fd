"""The medallion lake: Delta tables for bronze, silver, gold, quarantine and logs.

Every write is exactly one Delta commit, tagged with the run and batch that
made it, and recorded in the metadata store (``table_commits``, and ``lineage``
outputs) so ``steward data history`` can show row counts and writers. Every
dataset reference is ``layer.name@version``. Reads go through Arrow into Polars
(DuckDB's own delta extension would download at run time, so we never use it).

:class:`Lake` is the only code that touches Delta (``deltalake``): every other
stage reads and writes tables through its methods.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import polars as pl
import pyarrow as pa

from steward._primitives import utcnow
from steward.backends.base import MetadataStore
from steward.errors import BackendUnavailable, DataError, TableNotFound, VersionNotFound

__all__ = ["LAYERS", "Lake", "TableRef", "with_retries"]

logger = logging.getLogger(__name__)

LAYERS = ("bronze", "silver", "gold", "quarantine", "logs")
_STREAM_ROW_GROUP = 128 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class TableRef:
    """A table in the lake, optionally pinned to a version: ``silver.flights@12``."""

    layer: str
    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str, *, default_layer: str | None = None) -> TableRef:
        """Parse ``layer.name[@version]`` (or ``name[@version]`` with a default layer)."""
        body, _, ver = text.partition("@")
        layer, dot, name = body.partition(".")
        if not dot:
            if default_layer is None:
                raise DataError(
                    f"table reference {text!r} has no layer",
                    code="data.bad_ref",
                    hint=f"write it as LAYER.NAME[@VERSION], LAYER one of {', '.join(LAYERS)}",
                )
            layer, name = default_layer, body
        if layer not in LAYERS:
            raise DataError(f"unknown layer {layer!r} in {text!r}", code="data.bad_ref", hint=f"use one of {', '.join(LAYERS)}")
        if not name or not all(c.isalnum() or c in "_-" for c in name):
            raise DataError(f"bad table name in {text!r}", code="data.bad_ref", hint="use letters, digits, '_' and '-'")
        version: int | None = None
        if ver:
            if not ver.isdigit():
                raise DataError(f"bad version in {text!r}", code="data.bad_ref", hint="a version is a whole number, e.g. silver.flights@3")
            version = int(ver)
        return cls(layer, name, version)

    @property
    def table(self) -> str:
        """``layer.name`` without the version."""
        return f"{self.layer}.{self.name}"

    def at(self, version: int) -> TableRef:
        """The same table pinned to ``version``."""
        return TableRef(self.layer, self.name, version)

    def __str__(self) -> str:
        return self.table if self.version is None else f"{self.table}@{self.version}"


def with_retries(fn: Callable[[], T], *, attempts: int = 4, base_delay: float = 0.05, what: str = "lake IO") -> T:
    """Call ``fn``, retrying transient IO errors (OSError) with exponential backoff and jitter.

    Delta's optimistic concurrency makes a retried commit safe: a commit either
    lands whole or not at all.
    """
    for i in range(attempts):
        try:
            return fn()
        except OSError as exc:
            if i == attempts - 1:
                raise DataError(f"{what} failed after {attempts} attempts: {exc}", code="data.io") from exc
            delay = base_delay * (2**i) * (1 + random.random())
            logger.warning("%s failed (%s); retrying in %.2fs", what, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


class Lake:
    """Delta tables under one root (a local path or an object-store URL).

    Args:
        root: Root URI; each table lives at ``ROOT/LAYER/NAME``.
        metadata: Where commits are recorded (optional for read-only use).
        storage_options: Passed to delta-rs (S3 credentials come from the environment).
    """

    def __init__(self, root: str, metadata: MetadataStore | None = None, storage_options: dict[str, str] | None = None) -> None:
        self.root = root.rstrip("/")
        self.metadata = metadata
        self.storage_options = storage_options

    # -- locations ---------------------------------------------------------
    def uri(self, ref: TableRef | str) -> str:
        """Where a table lives."""
        r = ref if isinstance(ref, TableRef) else TableRef.parse(ref)
        return f"{self.root}/{r.layer}/{r.name}"

    def exists(self, ref: TableRef | str) -> bool:
        """Whether the table has at least one commit."""
        from deltalake import DeltaTable

        return bool(DeltaTable.is_deltatable(self.uri(ref), storage_options=self.storage_options))

    def _table(self, ref: TableRef | str, version: int | None = None) -> Any:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        r = ref if isinstance(ref, TableRef) else TableRef.parse(ref)
        v = version if version is not None else r.version
        try:
            dt = DeltaTable(self.uri(r), storage_options=self.storage_options)
        except TableNotFoundError:
            raise TableNotFound(f"table {r.table} does not exist", hint="run 'steward ingest' or 'steward pipeline run' first") from None
        if v is not None:
            latest = dt.version()
            if v < 0 or v > latest:
                raise VersionNotFound(f"{r.table} has no version {v} (latest is {latest})", hint=f"use a version between 0 and {latest}")
            try:
                dt.load_as_version(v)
            except Exception as exc:  # vacuumed or otherwise unreadable
                raise VersionNotFound(f"{r.table}@{v} cannot be loaded: {exc}") from None
        return dt

    def version(self, ref: TableRef | str) -> int:
        """The latest version of a table."""
        return int(self._table(ref).version())

    def pin(self, ref: TableRef | str) -> TableRef:
        """The reference pinned to its latest version if it has none."""
        r = ref if isinstance(ref, TableRef) else TableRef.parse(ref)
        return r if r.version is not None else r.at(self.version(r))

    def tables(self, layer: str | None = None) -> list[TableRef]:
        """Tables that exist (local lakes only list by directory)."""
        out: list[TableRef] = []
        if "://" in self.root and not self.root.startswith("file://"):
            return out
        base = Path(self.root.removeprefix("file://"))
        for lay in [layer] if layer else list(LAYERS):
            d = base / lay
            if d.is_dir():
                out += [TableRef(lay, p.name) for p in sorted(d.iterdir()) if (p / "_delta_log").is_dir()]
        return out

    # -- reads -------------------------------------------------------------
    def read(self, ref: TableRef | str, *, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """Read a table (at its pinned version, or the latest) into Polars."""
        dt = self._table(ref)
        tbl = with_retries(lambda: dt.to_pyarrow_table(columns=list(columns) if columns else None), what=f"read {ref}")
        return pl.from_arrow(tbl)  # type: ignore[return-value]

    def read_arrow(self, ref: TableRef | str, *, columns: Sequence[str] | None = None) -> pa.Table:
        """Read a table into Arrow."""
        dt = self._table(ref)
        return with_retries(lambda: dt.to_pyarrow_table(columns=list(columns) if columns else None), what=f"read {ref}")

    def scan(self, ref: TableRef | str) -> pl.LazyFrame:
        """A lazy Polars scan of a table version (predicate and projection pushdown)."""
        dt = self._table(ref)
        # Polars' own Delta reader: a pyarrow-dataset scan breaks on predicate pushdown once a
        # merge has written string_view columns next to plain string ones.
        return pl.scan_delta(self.uri(ref), version=int(dt.version()), storage_options=self.storage_options)

    def count(self, ref: TableRef | str) -> int:
        """Row count of a table version, from the Delta log's file statistics where possible."""
        dt = self._table(ref)
        return int(dt.to_pyarrow_dataset().count_rows())

    def iter_batches(self, ref: TableRef | str, *, batch_size: int) -> tuple[Iterator[pa.RecordBatch], int]:
        """Stream a table version in Arrow record batches of at most ``batch_size`` rows; also return its row count.

        Memory stays bounded by one batch, however large the table; the count comes from the Delta log.
        """
        dataset = self._table(ref).to_pyarrow_dataset()
        return dataset.to_batches(batch_size=batch_size), int(dataset.count_rows())

    def ray_dataset(self, ref: TableRef | str) -> Any:
        """A Ray Data dataset over a table version (the caller has started Ray; ``ray`` is imported here, lazily)."""
        import ray.data

        r = ref if isinstance(ref, TableRef) else TableRef.parse(ref)
        version = r.version if r.version is not None else self.version(r)
        return ray.data.read_delta(self.uri(r), version=version, storage_options=self.storage_options)

    def written_by(self, ref: TableRef | str) -> str | None:
        """The run that wrote a table version (``ref`` must be pinned), as recorded on commit; None when unknown."""
        r = ref if isinstance(ref, TableRef) else TableRef.parse(ref)
        if self.metadata is None or r.version is None:
            return None
        row = self.metadata.fetchone("SELECT run_id FROM table_commits WHERE table_name = ? AND version = ?", (r.table, r.version))
        return str(row["run_id"]) if row and row["run_id"] else None

    def history(self, ref: TableRef | str) -> list[dict[str, Any]]:
        """Versions of a table, newest first, with rows written, total rows and the writer run."""
        r = ref if isinstance(ref, TableRef) else TableRef.parse(ref)
        dt = self._table(r.table)
        recorded: dict[int, dict[str, Any]] = {}
        if self.metadata is not None:
            for row in self.metadata.fetchall(
                "SELECT version, run_id, batch_id, operation, rows_written, total_rows FROM table_commits WHERE table_name = ?",
                (r.table,),
            ):
                recorded[int(row["version"])] = row
        out = []
        for h in dt.history():
            v = int(h["version"])
            m = h.get("operationMetrics") or {}
            rec = recorded.get(v, {})
            written = rec.get("rows_written")
            if written is None:
                written = m.get("num_added_rows", m.get("num_target_rows_inserted", m.get("num_output_rows")))
            out.append(
                {
                    "version": v,
                    "timestamp": h.get("timestamp"),
                    "operation": rec.get("operation") or h.get("operation"),
                    "rows_written": written,
                    "total_rows": rec.get("total_rows"),
                    "run_id": rec.get("run_id") or h.get("steward.run_id"),
                    "batch_id": rec.get("batch_id") or h.get("steward.batch_id"),
                }
            )
        return out

    # -- writes ------------------------------------------------------------
    def _commit_properties(self, run_id: str | None, batch_id: str | None, operation: str) -> Any:
        from deltalake import CommitProperties

        meta = {"steward.operation": operation}
        if run_id:
            meta["steward.run_id"] = run_id
        if batch_id:
            meta["steward.batch_id"] = batch_id
        return CommitProperties(custom_metadata=meta)

    def _record(
        self, ref: TableRef, version: int, run_id: str | None, batch_id: str | None, operation: str, rows: int, *, appended: bool = False
    ) -> None:
        # Called once the Delta commit has landed: the rows are in the table whatever happens here. A metadata
        # outage must not turn that into a failed write (the caller would write the rows again: duplicates).
        # history() falls back to the Delta log's own commit properties for a commit recorded nowhere else.
        try:
            self._record_commit(ref, version, run_id, batch_id, operation, rows, appended=appended)
        except BackendUnavailable as exc:
            logger.warning("%s version %s is written; its commit record is not (%s)", ref.table, version, exc.message)

    def _record_commit(
        self, ref: TableRef, version: int, run_id: str | None, batch_id: str | None, operation: str, rows: int, *, appended: bool = False
    ) -> None:
        if self.metadata is None:
            return
        total: int | None = None
        if appended:
            # An append adds exactly ``rows``: carry the previous commit's total forward instead of
            # re-counting the table, whose cost grows with every commit (the prediction log commits
            # several times a second).
            prev = self.metadata.fetchone(
                "SELECT total_rows FROM table_commits WHERE table_name = ? AND version = ?", (ref.table, version - 1)
            )
            if prev is not None and prev["total_rows"] is not None:
                total = int(prev["total_rows"]) + rows
            elif version == 0:
                total = rows
        if total is None:
            total = self.count(ref.at(version))
        self.metadata.execute(
            "INSERT INTO table_commits (table_name, version, run_id, batch_id, operation, rows_written, total_rows, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (table_name, version) DO NOTHING",
            (ref.table, version, run_id, batch_id, operation, rows, total, utcnow()),
        )
        if run_id:
            self.metadata.execute(
                "INSERT INTO lineage (run_id, direction, table_ref, created_at) VALUES (?, 'output', ?, ?) "
                "ON CONFLICT (run_id, direction, table_ref) DO NOTHING",
                (run_id, str(ref.at(version)), utcnow()),
            )

    @staticmethod
    def _arrow(data: pa.Table | pl.DataFrame) -> pa.Table:
        return data.to_arrow() if isinstance(data, pl.DataFrame) else data

    def write(
        self,
        ref: TableRef | str,
        data: pa.Table | pl.DataFrame,
        *,
        mode: Literal["append", "overwrite"] = "append",
        partition_by: Sequence[str] | None = None,
        predicate: str | None = None,
        run_id: str | None = None,
        batch_id: str | None = None,
        operation: str | None = None,
        replace_schema: bool = False,
    ) -> int:
        """Write ``data`` as one Delta commit and return the new version.

        Args:
            mode: ``append`` or ``overwrite`` (with ``predicate``: replace only matching rows).
            partition_by: Partition columns when the table is created.
            predicate: With ``overwrite``, a SQL predicate limiting what is replaced.
            replace_schema: With ``overwrite``, the data's schema replaces the table's (a changed
                definition); without it an overwrite must keep the schema.

        Raises:
            DataError: ``replace_schema`` without ``overwrite`` (``data.bad_write``).
        """
        from deltalake import write_deltalake

        r = ref if isinstance(ref, TableRef) else TableRef.parse(ref)
        if replace_schema and mode != "overwrite":
            raise DataError(f"write {r.table}: replace_schema needs mode='overwrite'", code="data.bad_write")
        tbl = self._arrow(data)
        op = operation or mode
        exists = self.exists(r)
        schema_mode: Literal["merge", "overwrite"] | None = (
            "overwrite" if replace_schema else ("merge" if mode == "append" and exists else None)
        )
        kwargs: dict[str, Any] = {"mode": mode}
        with_retries(
            lambda: write_deltalake(
                self.uri(r),
                tbl,
                **kwargs,
                partition_by=list(partition_by) if partition_by and not exists else None,
                predicate=predicate,
                schema_mode=schema_mode,
                storage_options=self.storage_options,
                commit_properties=self._commit_properties(run_id, batch_id, op),
            ),
            what=f"write {r.table}",
        )
        version = self.version(r)
        self._record(r, version, run_id, batch_id, op, tbl.num_rows, appended=mode == "append")
        return version

    def write_stream(
        self,
        ref: TableRef | str,
        schema: pa.Schema,
        batches: Callable[[], Iterator[pa.RecordBatch]],
        *,
        rows: int,
        partition_by: Sequence[str] | None = None,
        run_id: str | None = None,
        batch_id: str | None = None,
        operation: str = "append",
    ) -> int:
        """Append record batches as one Delta commit without holding them all in memory; return the new version.

        Args:
            schema: The batches' schema (new columns are merged into the table's).
            batches: Makes the stream (called again on a retry, so it must start over each time).
            rows: How many rows the stream holds (recorded with the commit).
            partition_by: Partition columns when the table is created.
        """
        from deltalake import WriterProperties, write_deltalake

        r = ref if isinstance(ref, TableRef) else TableRef.parse(ref)
        exists = self.exists(r)
        # Small row groups: a reader of one row range (the contract gate's chunks) decodes little more than it
        # needs. Partitioned, smaller still: delta-rs keeps one open writer per partition (a year of days) and
        # holds each one's unfinished row group decoded in memory, so the row group bounds the write's memory.
        props = WriterProperties(max_row_group_size=_STREAM_ROW_GROUP // 16 if partition_by else _STREAM_ROW_GROUP)
        with_retries(
            lambda: write_deltalake(
                self.uri(r),
                pa.RecordBatchReader.from_batches(schema, batches()),
                mode="append",
                partition_by=list(partition_by) if partition_by and not exists else None,
                schema_mode="merge" if exists else None,
                storage_options=self.storage_options,
                writer_properties=props,
                commit_properties=self._commit_properties(run_id, batch_id, operation),
            ),
            what=f"write {r.table}",
        )
        version = self.version(r)
        self._record(r, version, run_id, batch_id, operation, rows, appended=True)
        return version

    def merge_insert(
        self,
        ref: TableRef | str,
        data: pa.Table | pl.DataFrame,
        *,
        keys: Sequence[str],
        partition_by: Sequence[str] | None = None,
        run_id: str | None = None,
        batch_id: str | None = None,
        operation: str = "merge",
    ) -> tuple[int, int]:
        """Insert only rows whose ``keys`` are not in the table yet (idempotent upsert-if-absent).

        Creates the table on first use. Returns ``(version, rows_inserted)``;
        when nothing is new, no commit is made and the current version is returned.
        """
        r = ref if isinstance(ref, TableRef) else TableRef.parse(ref)
        tbl = self._arrow(data)
        if not self.exists(r):
            if tbl.num_rows == 0:
                # an empty table still gets created so its schema is pinned
                return self.write(r, tbl, partition_by=partition_by, run_id=run_id, batch_id=batch_id, operation=operation), 0
            return self.write(r, tbl, partition_by=partition_by, run_id=run_id, batch_id=batch_id, operation=operation), tbl.num_rows
        if tbl.num_rows == 0:
            return self.version(r), 0
        dt = self._table(r)
        pred = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
        metrics = with_retries(
            lambda: (
                dt.merge(
                    tbl,
                    predicate=pred,
                    source_alias="s",
                    target_alias="t",
                    merge_schema=True,
                    commit_properties=self._commit_properties(run_id, batch_id, operation),
                )
                .when_not_matched_insert_all()
                .execute()
            ),
            what=f"merge into {r.table}",
        )
        inserted = int(metrics.get("num_target_rows_inserted", 0))
        version = self.version(r)
        if inserted:
            self._record(r, version, run_id, batch_id, operation, inserted, appended=True)
        return version, inserted

    # -- maintenance ---------------------------------------------------------
    def compact(
        self, ref: TableRef | str, *, partition_filters: list[tuple[str, str, Any]] | None = None, target_size: int | None = None
    ) -> dict[str, Any]:
        """Rewrite small files into large ones as one commit; the rows and every older version stay readable.

        Appending tables (the prediction log commits every few seconds) pile up small files,
        and every later scan pays for each one. Returns the new version and the file counts.
        """
        r = ref if isinstance(ref, TableRef) else TableRef.parse(ref)
        dt = self._table(r.table)
        before = int(dt.version())
        metrics = with_retries(
            lambda: dt.optimize.compact(
                partition_filters=partition_filters,  # type: ignore[arg-type]
                target_size=target_size,
                commit_properties=self._commit_properties(None, None, "compact"),
            ),
            what=f"compact {r.table}",
        )
        version = self.version(r)
        if version != before:
            self._record(r, version, None, None, "compact", 0, appended=True)
        return {
            "table": r.table,
            "version": version,
            "files_added": int(metrics.get("numFilesAdded", 0)),
            "files_removed": int(metrics.get("numFilesRemoved", 0)),
        }

    def pinned_versions(self, ref: TableRef | str) -> list[int]:
        """Versions of a table that a recorded run read (training sets, feature builds, pipeline runs)."""
        if self.metadata is None:
            return []
        r = ref if isinstance(ref, TableRef) else TableRef.parse(ref)
        rows = self.metadata.fetchall(
            "SELECT DISTINCT table_ref FROM lineage WHERE direction = 'input' AND table_ref LIKE ?", (f"{r.table}@%",)
        )
        out = set()
        for row in rows:
            _, _, v = str(row["table_ref"]).rpartition("@")
            if v.isdigit():
                out.add(int(v))
        return sorted(out)

    def vacuum(self, ref: TableRef | str, *, retention_hours: int = 168, dry_run: bool = True, keep_pinned: bool = True) -> dict[str, Any]:
        """Delete data files no longer needed by recent versions, keeping every version a recorded run pinned.

        Args:
            retention_hours: Files removed from the table longer ago than this may go (Delta's default: 7 days).
            dry_run: Only list what would be deleted.
            keep_pinned: Keep the files of every version in the lineage table, so pinned training sets
                and ``steward reproduce`` keep working however old they are.
        """
        r = ref if isinstance(ref, TableRef) else TableRef.parse(ref)
        dt = self._table(r.table)
        keep = self.pinned_versions(r) if keep_pinned else []
        files = with_retries(
            lambda: dt.vacuum(
                retention_hours=retention_hours,
                dry_run=dry_run,
                enforce_retention_duration=False,
                keep_versions=keep or None,
            ),
            what=f"vacuum {r.table}",
        )
        return {"table": r.table, "dry_run": dry_run, "files": sorted(files), "kept_versions": keep}
