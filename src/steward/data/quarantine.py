"""The quarantine: every row that could not reach silver, with the rule it broke.

Table ``quarantine.<source>`` holds one row per (batch, row, rule, column):
the batch id, the row number, the rule (``parse`` for an unreadable line,
otherwise the contract's rule), the column and value at fault, a reason, the
row as received (``raw``: JSON text, or the raw line) and the contract
version. Writes are merge-inserts keyed on ``(_batch_id, _row, rule, column)``,
so re-processing a batch never duplicates a quarantine row.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from steward.data.lake import Lake, TableRef

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = [
    "FILE_ROW",
    "FILE_RULE",
    "PARSE_RULE",
    "QUARANTINE_KEYS",
    "QUARANTINE_SCHEMA",
    "failures_frame",
    "quarantine_counts",
    "quarantine_summary",
    "read_quarantine",
    "write_quarantine",
]

logger = logging.getLogger(__name__)

PARSE_RULE = "parse"
"""The rule name of a landing line that could not be parsed at all."""
FILE_RULE = "file"
"""The rule name of a landing file quarantined as a whole (one record; ``raw`` holds its counts as JSON)."""
FILE_ROW = -1
"""The ``_row`` of a file-level quarantine record: no row of the file, the whole of it."""

QUARANTINE_KEYS = ("_batch_id", "_row", "rule", "column")

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "_batch_id": pl.String(),
    "_row": pl.Int64(),
    "rule": pl.String(),
    "column": pl.String(),
    "value": pl.String(),
    "reason": pl.String(),
    "raw": pl.String(),
    "contract_version": pl.String(),
    "_quarantined_at": pl.Datetime("us", "UTC"),
}


def failures_frame(
    failures: pl.DataFrame,
    *,
    batch_id: str,
    raw_by_row: dict[int, str],
    contract_version: str | None,
    at: datetime,
) -> pl.DataFrame:
    """Turn contract failures (``_row, rule, column, value, reason``) into quarantine rows.

    ``column`` is never null (an empty string for row-level rules) because it is
    part of the merge key and SQL ``NULL = NULL`` is not true.
    """
    if failures.height == 0:
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    f = failures
    for c in ("rule", "column", "value", "reason"):
        if c not in f.columns:
            f = f.with_columns(pl.lit(None, dtype=pl.String).alias(c))
    out = f.select(
        pl.lit(batch_id, dtype=pl.String).alias("_batch_id"),
        pl.col("_row").cast(pl.Int64),
        pl.col("rule").cast(pl.String).fill_null(""),
        pl.col("column").cast(pl.String).fill_null(""),
        pl.col("value").cast(pl.String),
        pl.col("reason").cast(pl.String),
    )
    raw = pl.DataFrame(
        {"_row": list(raw_by_row.keys()), "raw": list(raw_by_row.values())},
        schema={"_row": pl.Int64(), "raw": pl.String()},
    )
    out = out.join(raw, on="_row", how="left").with_columns(
        pl.lit(contract_version, dtype=pl.String).alias("contract_version"),
        pl.lit(at, dtype=pl.Datetime("us", "UTC")).alias("_quarantined_at"),
    )
    # several failures of the same rule and column on one row collapse to one quarantine row
    return out.unique(subset=list(QUARANTINE_KEYS), keep="first", maintain_order=True).select(list(QUARANTINE_SCHEMA))


def raw_json(row: dict[str, Any]) -> str:
    """The row as received, as JSON text (data columns only, no pipeline metadata)."""
    return json.dumps({k: v for k, v in row.items() if not k.startswith("_")}, default=str, ensure_ascii=False)


def write_quarantine(
    lake: Lake, source: str, rows: pl.DataFrame, *, run_id: str | None, batch_id: str | None = None
) -> tuple[int | None, int]:
    """Merge-insert quarantine rows (one commit, none when nothing is new).

    Returns:
        ``(version, rows_inserted)``; version is None when the table does not exist and nothing was written.
    """
    ref = TableRef("quarantine", source)
    if rows.height == 0:
        return (lake.version(ref) if lake.exists(ref) else None), 0
    rows = rows.select([pl.col(c).cast(t) for c, t in QUARANTINE_SCHEMA.items()])
    version, inserted = lake.merge_insert(ref, rows, keys=list(QUARANTINE_KEYS), run_id=run_id, batch_id=batch_id, operation="quarantine")
    return version, inserted


def _scan_quarantine(ws: Workspace, *, source: str | None, batch_id: str | None, rule: str | None) -> pl.LazyFrame | None:
    """One lazy scan over the quarantine of one source (or all) with the filters pushed down; None when there is none."""
    sources = [source] if source else sorted({r.name for r in ws.lake.tables("quarantine")} | set(ws.spec.sources))
    frames: list[pl.LazyFrame] = []
    for name in sources:
        ref = TableRef("quarantine", name)
        if not ws.lake.exists(ref):
            continue
        lf = ws.lake.scan(ref)
        if batch_id:
            lf = lf.filter(pl.col("_batch_id") == batch_id)
        if rule:
            lf = lf.filter(pl.col("rule") == rule)
        cols = [pl.col(c).cast(t) for c, t in QUARANTINE_SCHEMA.items()]
        frames.append(lf.select(pl.lit(name, dtype=pl.String).alias("source"), *cols))
    if not frames:
        return None
    return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]


def read_quarantine(
    ws: Workspace,
    *,
    source: str | None = None,
    batch_id: str | None = None,
    rule: str | None = None,
    limit: int | None = None,
) -> pl.DataFrame:
    """Quarantined rows of one source (or all), optionally for one batch or rule; newest batch first.

    Adds a ``source`` column. An absent quarantine table reads as empty. With
    ``limit`` only the newest ``limit`` rows are kept while the scan streams
    (a top-k), so a huge quarantine costs little memory.
    """
    lf = _scan_quarantine(ws, source=source, batch_id=batch_id, rule=rule)
    if lf is None:
        return pl.DataFrame(schema={"source": pl.String(), **QUARANTINE_SCHEMA})
    lf = lf.sort(["_quarantined_at", "_batch_id", "_row"], descending=[True, False, False])
    if limit is not None:
        lf = lf.head(limit)
    return lf.collect(engine="streaming")


def quarantine_summary(
    ws: Workspace, *, source: str | None = None, batch_id: str | None = None, rule: str | None = None
) -> tuple[int, int, pl.DataFrame]:
    """``(failures, distinct rows, counts by source/rule/column)`` of the quarantine, aggregated while streaming."""
    lf = _scan_quarantine(ws, source=source, batch_id=batch_id, rule=rule)
    if lf is None:
        return 0, 0, quarantine_counts(pl.DataFrame(schema={"source": pl.String(), **QUARANTINE_SCHEMA}))
    keys = lf.select("source", "_batch_id", "_row", "rule", "column")
    totals = keys.select(pl.len().alias("n"), pl.struct("source", "_batch_id", "_row").n_unique().alias("rows"))
    t = totals.collect(engine="streaming")
    return int(t["n"][0]), int(t["rows"][0]), quarantine_counts(keys)


def quarantine_counts(df: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Counts by source, rule and column: ``rows`` (distinct rows) and ``failures``."""
    schema = {"source": pl.String(), "rule": pl.String(), "column": pl.String(), "rows": pl.UInt32(), "failures": pl.UInt32()}
    out = (
        df.lazy()
        .group_by(["source", "rule", "column"])
        .agg(pl.struct("_batch_id", "_row").n_unique().cast(pl.UInt32).alias("rows"), pl.len().cast(pl.UInt32).alias("failures"))
        .sort(["failures", "source", "rule", "column"], descending=[True, False, False, False])
        .collect(engine="streaming")
    )
    return out if out.height else pl.DataFrame(schema=schema)
