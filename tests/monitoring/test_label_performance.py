"""Delayed labels joined by request id or by entity key; metrics per window and per slice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from monitor_helpers import KEY, NOW, flights_like, write_labels
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

from steward.monitoring import classification_metrics, join_labels, load_labels, performance_by_window, roc_auc
from steward.spec import LabelsSpec
from steward.workspace import Workspace


def test_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=400)
    p = np.round(np.clip(y * 0.3 + rng.random(400) * 0.7, 0, 1), 2)  # rounded: many ties
    m = classification_metrics(y, p)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p >= 0.5))
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    assert m["log_loss"] == pytest.approx(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)))
    assert roc_auc([1, 1], [0.2, 0.3]) is None
    assert classification_metrics([], [])["roc_auc"] is None


def test_join_by_request_id_with_label_delay() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    preds = pl.DataFrame(
        {"request_id": ["a", "b", "c"], "ts": [t0, t0 + timedelta(hours=12), t0 + timedelta(hours=30)], "prediction": [0.9, 0.2, 0.7]}
    ).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    labels = pl.DataFrame({"request_id": ["a", "b", "c", "zzz"], "label": [1, 0, 1, 0]})
    joined = join_labels(preds, labels)
    assert sorted(joined.get_column("request_id").to_list()) == ["a", "b", "c"]
    # predictions younger than the label delay are not judged yet
    recent = join_labels(preds, labels, now=t0 + timedelta(hours=36), delay="1d")
    assert sorted(recent.get_column("request_id").to_list()) == ["a", "b"]


def test_entity_key_join_from_silver_and_per_slice_metrics(monitor_ws: Workspace) -> None:
    frame = flights_like(600, seed=5, start=NOW - timedelta(days=3), span=timedelta(days=3))
    write_labels(monitor_ws, frame)
    labels = load_labels(monitor_ws, LabelsSpec(source="silver.flights", join=KEY, expr="arr_delay >= 15"))
    assert labels.get_column("label").to_list() == frame.get_column("late").to_list()
    # the log carries the key inside a JSON features column (the other logging format)
    log = frame.select(
        "ts",
        pl.struct([*KEY, "dep_delay"]).struct.json_encode().alias("features"),
        pl.col("score").alias("prediction"),
    )
    joined = join_labels(log, labels, on=KEY)
    assert joined.height == 600
    perf = performance_by_window(joined, by="time", size="1d", slices=["origin"])
    overall = perf.filter(pl.col("slice") == "all")
    days = joined.get_column("ts").dt.date().n_unique()
    assert days == 4 and overall.height == days and overall.get_column("n").sum() == 600
    for row in perf.iter_rows(named=True):
        w = joined.with_columns((pl.col("ts").dt.epoch("us") // 86_400_000_000).alias("w")).filter(pl.col("w") == row["window"])
        if row["slice"] == "origin":
            w = w.filter(pl.col("origin") == row["slice_value"])
        assert row["n"] == w.height
        assert row["roc_auc"] == pytest.approx(roc_auc_score(w.get_column("label"), w.get_column("prediction")))
    assert set(perf.filter(pl.col("slice") == "origin").get_column("slice_value")) == {"JFK", "LGA", "EWR"}


def test_concept_drift_shows_as_quality_drop_with_stable_inputs() -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(size=2000)
    p = 1 / (1 + np.exp(-2 * x))
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    ts = [t0 + timedelta(hours=i % 48) for i in range(2000)]
    y_before = (rng.random(2000) < p).astype(int)
    y_after = (rng.random(2000) < 1 - p).astype(int)  # the relationship flipped; x did not move
    y = np.where(np.array([t < t0 + timedelta(days=1) for t in ts]), y_before, y_after)
    joined = pl.DataFrame({"ts": ts, "prediction": p, "label": y}).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    perf = performance_by_window(joined, size="1d").filter(pl.col("slice") == "all")
    aucs = perf.get_column("roc_auc").to_list()
    assert aucs[0] > 0.7 and aucs[1] < 0.3


def test_asof_join_takes_each_entitys_next_outcome_within_tolerance() -> None:
    t0 = datetime(2024, 3, 1, tzinfo=UTC)
    h = timedelta(hours=1)
    preds = pl.DataFrame(
        {
            "request_id": ["p1", "p2", "p3", "p4", "p5"],
            "customer": [7, 7, 7, 9, 11],
            "ts": [t0, t0 + 5 * h, t0 + 30 * h, t0 + h, t0],
            "prediction": [0.8, 0.3, 0.6, 0.9, 0.5],
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    # customer 7 churned at +2h, came back, and was fine at +10h; 9's outcome is 3 days later; 11 has none.
    # The outcome times are naive (UTC) in the source table; the keys are a narrower integer type.
    labels = pl.DataFrame(
        {
            "customer": pl.Series([7, 7, 9], dtype=pl.Int32),
            "label": [1, 0, 1],
            "label_ts": [datetime(2024, 3, 1, 2), datetime(2024, 3, 1, 10), datetime(2024, 3, 4, 1)],
        }
    )
    labels = labels.with_columns(pl.col("label_ts").dt.replace_time_zone("UTC"))
    joined = join_labels(preds, labels, on=["customer"], asof=("forward", "1d")).sort("request_id")
    # p1 → the churn at +2h; p2 → the recovery at +10h; p3 (+30h) has no later outcome; p4's is > 1 day away
    assert dict(zip(joined["request_id"], joined["label"], strict=True)) == {"p1": 1, "p2": 0}
    back = join_labels(preds, labels, on=["customer"], asof=("backward", "1d")).sort("request_id")
    assert dict(zip(back["request_id"], back["label"], strict=True)) == {"p2": 1, "p3": 0}


def test_asof_labels_from_the_lake_drive_window_performance(monitor_ws: Workspace) -> None:
    from monitor_helpers import write_log

    from steward.monitoring import evaluate_policies

    # one outcome per (carrier, origin) per hour, an hour after the flights it judges
    frame = flights_like(600, seed=31, start=NOW - timedelta(hours=22), span=timedelta(hours=20))
    write_log(monitor_ws, frame)
    outcomes = (
        frame.with_columns(pl.col("ts").dt.truncate("1h").alias("hour"))
        .group_by(["carrier", "origin", "hour"])
        .agg((pl.col("late").mean() >= 0.5).cast(pl.Int8).alias("label"))
        .with_columns((pl.col("hour") + pl.duration(hours=1)).dt.replace_time_zone(None).alias("outcome_at"))
        .drop("hour")
    )
    monitor_ws.lake.write("silver.outcomes", outcomes)
    asof = LabelsSpec(
        source="silver.outcomes", join=["carrier", "origin"], match="asof", time_column="outcome_at", tolerance="2h", delay="0s"
    )
    monitor_ws.spec = monitor_ws.spec.with_overrides({"monitoring.labels": asof})
    labels = load_labels(monitor_ws, monitor_ws.spec.monitoring.labels, keys=["carrier", "origin"])
    assert labels.height == outcomes.height and labels["label_ts"].dtype == pl.Datetime("us", "UTC")
    verdict = evaluate_policies(monitor_ws, "flights", now=NOW, record=False, notify=False)
    perf = verdict.details["performance"]["all"]
    # every prediction found the outcome of its own (carrier, origin, hour) group, the one an hour later
    expected = frame.with_columns(pl.col("ts").dt.truncate("1h").alias("hour")).join(
        outcomes.with_columns((pl.col("outcome_at") - pl.duration(hours=1)).dt.replace_time_zone("UTC").alias("hour")),
        on=["carrier", "origin", "hour"],
    )
    assert perf["n"] == 600 == expected.height
    assert perf["roc_auc"] == pytest.approx(roc_auc_score(expected["label"].to_numpy(), expected["score"].to_numpy()))


def test_asof_needs_entity_keys_and_an_outcome_time() -> None:
    with pytest.raises(ValueError, match="time_column"):
        LabelsSpec(source="silver.outcomes", join=["customer"], match="asof")
    with pytest.raises(ValueError, match="join"):
        LabelsSpec(source="silver.outcomes", time_column="at", match="asof")
