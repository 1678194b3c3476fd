"""Python feature transforms of the flights example (``transform:`` in ``steward.yaml``).

Steward imports these from the project directory when it builds a gold table;
each takes the source table as a Polars frame and returns entity keys, the
table's ``timestamp`` column and the feature columns.
"""

from __future__ import annotations

import polars as pl

__all__ = ["MAX_AGE_YEARS", "plane_age_by_year"]

MAX_AGE_YEARS = 80
"""Ages past this get no row (and so, with the table's ttl, a null feature): no airliner flies that long."""


def plane_age_by_year(planes: pl.DataFrame) -> pl.DataFrame:
    """Each plane's age in whole years, one row per calendar year from the year it was built.

    The row for year ``Y`` is stamped ``Y-01-01T00:00Z`` (``valid_from``) and
    holds ``Y - year built``, so an as-of join gives every event the age in the
    year of its own event time (UTC); a fixed ``2013 - year`` would be wrong for
    any other year. Planes without a build year get no rows (a null feature).

    Args:
        planes: ``silver.planes`` (``tailnum``, ``year`` built, ...).

    Returns:
        ``tailnum``, ``valid_from`` (UTC) and ``plane_age`` (Int64).
    """
    built = planes.select("tailnum", pl.col("year").cast(pl.Int64).alias("built")).drop_nulls()
    years = built.with_columns(pl.int_ranges(pl.col("built"), pl.col("built") + MAX_AGE_YEARS + 1).alias("as_of")).explode("as_of")
    return years.select(
        "tailnum",
        pl.datetime(pl.col("as_of"), 1, 1, time_zone="UTC").alias("valid_from"),
        (pl.col("as_of") - pl.col("built")).alias("plane_age"),
    )
