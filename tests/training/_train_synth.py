"""Small synthetic flights-like training sets for training and registry tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from steward.data.lake import TableRef
from steward.features.training_set import TrainingSet
from steward.workspace import Workspace, open_workspace

ORIGINS = ["EWR", "JFK", "LGA"]
CARRIERS = ["AA", "B6", "DL", "EV", "UA", "WN"]
FEATURES = ["origin", "carrier", "hour", "distance", "wind_speed"]


def make_frame(n: int = 3000, seed: int = 0) -> pl.DataFrame:
    """Flights of 2013 with a late label that depends on hour, wind, carrier and origin."""
    rng = np.random.default_rng(seed)
    start = datetime(2013, 1, 1, tzinfo=UTC)
    hours = np.sort(rng.integers(0, 365 * 24, size=n))
    origin = rng.choice(ORIGINS, size=n)
    carrier = rng.choice(CARRIERS, size=n)
    hour = rng.integers(5, 23, size=n)
    distance = rng.uniform(100, 2500, size=n).round(0)
    wind = rng.gamma(2.0, 5.0, size=n).round(1)
    logit = -1.2 + 0.18 * (hour - 14) + 0.09 * (wind - 10) + 0.9 * (carrier == "EV") - 0.6 * (carrier == "DL") + 0.4 * (origin == "EWR")
    late = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pl.DataFrame(
        {
            "flight_id": np.arange(n, dtype=np.int64),
            "time_hour": [start + timedelta(hours=int(h)) for h in hours],
            "origin": origin,
            "carrier": carrier,
            "hour": hour.astype(np.int64),
            "distance": distance,
            "wind_speed": wind,
            "late": late,
        }
    ).with_columns(pl.col("time_hour").dt.cast_time_unit("us"))


def training_set(frame: pl.DataFrame, version: int = 0, table: str = "silver.flights") -> TrainingSet:
    """Wrap a frame as a TrainingSet pinned to ``table@version``."""
    return TrainingSet(
        frame=frame,
        inputs=[TableRef.parse(table).at(version)],
        feature_names=list(FEATURES),
        label="late",
        event_time="time_hour",
        entity_keys=["flight_id"],
        categorical=["origin", "carrier"],
    )


def flip_labels(frame: pl.DataFrame, origin: str, before: str) -> pl.DataFrame:
    """Invert the label of one origin's rows before ``before`` (a challenger that learns the wrong thing there)."""
    cut = datetime.fromisoformat(before).replace(tzinfo=UTC)
    mask = (pl.col("origin") == origin) & (pl.col("time_hour") < cut)
    return frame.with_columns(pl.when(mask).then(~pl.col("late")).otherwise(pl.col("late")).alias("late"))


def model_section(**overrides: Any) -> dict[str, Any]:
    """A small, fast model spec; nested dicts in ``overrides`` replace whole sections."""
    section: dict[str, Any] = {
        "name": "flights_delay",
        "estimator": "lightgbm.LGBMClassifier",
        "params": {"n_estimators": 30, "num_leaves": 15, "learning_rate": 0.1, "min_child_samples": 10},
        "metric": "roc_auc",
        "split": {"validation_from": "2013-10-01"},
        "slices": ["origin", "carrier"],
        "fairness": {"column": "origin", "metric": "roc_auc", "max_gap": 0.3},
        "gate": {"margin": 0.01, "slice_margin": 0.03, "latency_p99_ms": 5000, "min_metric": 0.6, "batch_size": 500, "latency_repeats": 10},
        "explain_sample": 200,
        "intended_use": "Predict at scheduling time whether a flight arrives 15+ minutes late.",
        "limitations": ["Synthetic test data."],
    }
    section.update(overrides)
    return section


def make_workspace(tmp: Path, *, project: str = "t", tracking_uri: str | None = None, **model: Any) -> Workspace:
    """A project in ``tmp`` with the given model section (and optional tracking URI)."""
    doc: dict[str, Any] = {"project": project, "model": model_section(**model)}
    if tracking_uri:
        doc["storage"] = {"tracking_uri": tracking_uri}
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "steward.yaml").write_text(yaml.safe_dump(doc))
    return open_workspace(tmp)
