"""Small synthetic silver tables (flights, weather, planes) and a spec with a features section."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from steward.spec import load_spec
from steward.workspace import Workspace

T0 = datetime(2013, 3, 1, tzinfo=UTC)
ORIGINS = ["EWR", "JFK", "LGA"]
CARRIERS = ["AA", "B6", "UA"]
DESTS = ["ATL", "BOS", "ORD"]
TAILS = ["N1", "N2", "N3", "N4", None]

FEATURES_YAML = """
features:
  entities:
    origin: {keys: [origin]}
    carrier: {keys: [carrier]}
    route: {keys: [origin, dest]}
    plane: {keys: [tailnum]}
  tables:
    weather_at_origin:
      entity: origin
      source: silver.weather
      timestamp: time_hour
      ttl: 3h
      columns: {temp: temp, wind_speed: wind_speed, visib: visib}
    carrier_late:
      entity: carrier
      source: silver.flights
      timestamp: time_hour
      available_after: 14h
      aggregates:
        - {name: carrier_late_1d, expr: "arr_delay >= 15", function: mean, window: 1d}
        - {name: carrier_late_3d, expr: "arr_delay >= 15", function: mean, window: 3d}
    route_late:
      entity: route
      source: silver.flights
      timestamp: time_hour
      available_after: 14h
      aggregates:
        - {name: route_late_2d, expr: "arr_delay >= 15", function: mean, window: 2d}
        - {name: route_flights_2d, expr: "arr_delay", function: count, window: 2d}
        - {name: route_delay_sum_2d, expr: "arr_delay", function: sum, window: 2d}
    plane_age:
      entity: plane
      source: silver.planes
      columns: {plane_age: "2013 - year"}
  events:
    source: silver.flights
    timestamp: time_hour
    keys: [carrier, flight, origin, time_hour]
    label: {name: late, expr: "arr_delay >= 15"}
    features: [carrier, origin, dest, hour, month, distance]
  categorical: [carrier, origin, dest]
"""


def _silver(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the silver bookkeeping columns."""
    return frame.with_columns(
        pl.lit("b1").alias("_batch_id"),
        pl.lit(datetime(2014, 1, 1, tzinfo=UTC)).cast(pl.Datetime("us", "UTC")).alias("_ingested_at"),
        pl.col("time_hour").dt.strftime("%Y-%m-%d").alias("_date") if "time_hour" in frame.columns else pl.lit("2013-01-01").alias("_date"),
    )


def make_flights(n: int = 300, days: int = 8, seed: int = 7) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        th = T0 + timedelta(hours=rng.randrange(days * 24))
        rows.append(
            {
                "year": 2013,
                "month": th.month,
                "day": th.day,
                "carrier": rng.choice(CARRIERS),
                "flight": 100 + i,
                "tailnum": rng.choice(TAILS),
                "origin": rng.choice(ORIGINS),
                "dest": rng.choice(DESTS),
                "arr_delay": float(rng.choice([-10, -3, 0, 5, 14, 15, 30, 90])),
                "distance": rng.choice([200, 700, 1000]),
                "hour": th.hour,
                "time_hour": th,
            }
        )
    df = pl.DataFrame(rows, schema_overrides={"time_hour": pl.Datetime("us", "UTC"), "month": pl.Int64, "hour": pl.Int64, "year": pl.Int64})
    return _silver(df)


def make_weather(days: int = 8, seed: int = 3, skip_every: int = 5) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = []
    for o in ORIGINS:
        for h in range(days * 24):
            if h % skip_every == 2:
                continue  # gaps: the as-of join must fall back to an earlier hour (within the TTL)
            rows.append(
                {
                    "origin": o,
                    "temp": round(rng.uniform(20, 60), 1),
                    "wind_speed": round(rng.uniform(0, 30), 2),
                    "visib": float(rng.choice([1, 5, 10])),
                    "time_hour": T0 + timedelta(hours=h),
                }
            )
    return _silver(pl.DataFrame(rows, schema_overrides={"time_hour": pl.Datetime("us", "UTC")}))


def make_planes() -> pl.DataFrame:
    df = pl.DataFrame(
        {"tailnum": ["N1", "N2", "N3"], "year": [2000, 2010, None], "seats": [150, 180, 200]}, schema_overrides={"year": pl.Int64}
    )
    return df.with_columns(pl.lit("b1").alias("_batch_id"))


def write_project(root: Path, features_yaml: str = FEATURES_YAML, extra_storage: str = "", project: str = "feat") -> Workspace:
    (root / "steward.yaml").write_text(f"project: {project}\nstorage:\n  root: .steward\n{extra_storage}{features_yaml}")
    return Workspace(load_spec(root))
