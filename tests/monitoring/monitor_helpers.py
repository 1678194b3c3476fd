"""Helpers for the monitoring tests: a small flights-like prediction log and delayed labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from steward.workspace import Workspace

NOW = datetime(2013, 12, 31, 12, 0, tzinfo=UTC)
KEY = ["year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"]

MONITORING = """
monitoring:
  window: {by: time, size: 1d}
  reference_sample: 2000
  slices: [origin]
  policies:
    - {name: feature_drift, detector: psi, on: features, columns: [dep_delay, carrier], threshold: 0.2, warn: 0.1, action: retrain, min_rows: 100,
       runbook: docs/runbooks/feature-drift.md}
    - {name: prediction_ks, detector: ks, on: prediction, threshold: 0.01, action: alert, min_rows: 100, runbook: docs/runbooks/prediction-drift.md}
    - {name: quality, detector: roc_auc, on: performance, threshold: 0.7, warn: 0.75, action: shadow-then-promote, min_rows: 50,
       runbook: docs/runbooks/performance-drop.md}
    - {name: latency_burn, detector: all, on: slo, action: rollback, min_rows: 1, runbook: docs/runbooks/slo-burn.md}
  slos:
    - {name: latency, objective: 0.99, threshold_ms: 50}
    - {name: availability, objective: 0.999}
  labels: {source: silver.flights, join: [year, month, day, carrier, flight, origin, sched_dep_time], expr: "arr_delay >= 15", delay: 1d}
"""


def flights_like(
    n: int, *, seed: int, shift: float = 0.0, start: datetime = NOW - timedelta(days=2), span: timedelta = timedelta(days=2)
) -> pl.DataFrame:
    """Flights with a delay-driven label, spread over ``[start, start + span)``."""
    rng = np.random.default_rng(seed)
    ts = [start + span * float(f) for f in np.sort(rng.random(n))]
    dep_delay = rng.normal(10 + shift, 20, size=n)
    carrier = rng.choice(["UA", "AA", "B6", "DL"] if shift == 0 else ["UA", "WN", "WN", "WN"], size=n)
    late_p = 1 / (1 + np.exp(-(dep_delay - 15) / 8))
    return pl.DataFrame(
        {
            "ts": ts,
            "year": [t.year for t in ts],
            "month": [t.month for t in ts],
            "day": [t.day for t in ts],
            "carrier": carrier,
            "flight": rng.integers(1, 5000, size=n),
            "origin": rng.choice(["JFK", "LGA", "EWR"], size=n),
            "sched_dep_time": np.arange(n) % 2400,
            "dep_delay": dep_delay,
            "late": (rng.random(n) < late_p).astype(np.int64),
            "score": np.clip(late_p + rng.normal(0, 0.05, size=n), 0, 1),
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


def write_log(ws: Workspace, frame: pl.DataFrame, *, model: str = "flights", version: str = "1", latency: float = 10.0) -> None:
    """Log ``frame`` as served predictions (features as columns)."""
    log = frame.select(
        pl.Series("request_id", [f"r{i}-{version}-{frame.height}" for i in range(frame.height)]),
        pl.lit(model).alias("model"),
        pl.lit(version).alias("version"),
        pl.lit("champion").alias("variant"),
        "ts",
        *KEY,
        "dep_delay",
        pl.col("score").cast(pl.Float64).alias("prediction"),
        pl.lit(latency).alias("latency_ms"),
    )
    ws.lake.write("logs.predictions", log)


def write_labels(ws: Workspace, frame: pl.DataFrame) -> None:
    """silver.flights rows whose arr_delay makes ``late`` the label."""
    silver = frame.select(*KEY, pl.when(pl.col("late") == 1).then(30.0).otherwise(0.0).alias("arr_delay"))
    ws.lake.write("silver.flights", silver)
