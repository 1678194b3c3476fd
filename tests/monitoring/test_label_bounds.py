"""Label loading is bounded by the window: only labels that can join it are collected, with identical results."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from monitor_helpers import KEY, NOW, flights_like, write_log

from steward.monitoring import MonitorWindow, classification_metrics, evaluate_policies, join_labels, load_labels
from steward.spec import LabelsSpec
from steward.workspace import Workspace

SPEC = LabelsSpec(source="silver.flights", join=KEY, expr="arr_delay >= 15", delay="1d")


def _silver(frame: pl.DataFrame, after: timedelta = timedelta(days=1)) -> pl.DataFrame:
    """Outcomes of ``frame``'s flights, recorded ``after`` them (``ts``: the latest record of a flight wins)."""
    late = pl.when(pl.col("late") == 1).then(30.0).otherwise(0.0).alias("arr_delay")
    return frame.select(*KEY, late, (pl.col("ts") + after).alias("ts"))


def _window_and_labels(ws: Workspace) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A labelled day one label-delay back, and a label table twenty times larger than it."""
    window = flights_like(500, seed=51, start=NOW - timedelta(days=2), span=timedelta(hours=23))
    history = flights_like(10_000, seed=52, start=NOW - timedelta(days=400), span=timedelta(days=300))
    # a correction for some of the window's flights (the later row wins) and the rest of the year's outcomes
    corrected = _silver(window.head(50), timedelta(days=2)).with_columns((30.0 - pl.col("arr_delay")).alias("arr_delay"))
    ws.lake.write("silver.flights", pl.concat([_silver(history), _silver(window), corrected, _silver(history.head(5000))]))
    return window, history


def test_exact_join_collects_only_the_windows_labels_with_identical_metrics(monitor_ws: Workspace) -> None:
    window, _ = _window_and_labels(monitor_ws)
    write_log(monitor_ws, window)
    preds = monitor_ws.lake.read("logs.predictions")
    everything = load_labels(monitor_ws, SPEC, keys=KEY)
    bounded = load_labels(monitor_ws, SPEC, keys=KEY, predictions=preds)
    assert everything.height > 10_000 and bounded.height == 500
    full = join_labels(preds, everything, on=KEY).sort("request_id")
    part = join_labels(preds, bounded, on=KEY).sort("request_id")
    assert part.equals(full) and part.height == 500
    # the corrections won, in both
    assert part.get_column("label").sum() == window.get_column("late").sum() + 50 - 2 * window.head(50).get_column("late").sum()

    v = evaluate_policies(monitor_ws, "flights", MonitorWindow(start=NOW - timedelta(days=1), end=NOW), version="1", now=NOW,
                          record=False, notify=False)  # fmt: skip
    assert v.details["labels"] == {"labels_loaded": 500, "labelled_rows": 500}
    expected = classification_metrics(full.get_column("label").to_numpy(), full.get_column("prediction").to_numpy())
    got = v.details["performance"]["all"]
    assert got.keys() == expected.keys()
    for k, val in expected.items():
        assert got[k] == pytest.approx(val), k


@pytest.mark.parametrize("direction", ["forward", "backward", "nearest"])
def test_asof_join_collects_only_outcomes_within_reach(monitor_ws: Workspace, direction: str) -> None:
    rng = np.random.default_rng(53)
    preds = flights_like(300, seed=54, start=NOW - timedelta(hours=22), span=timedelta(hours=20)).select(
        pl.Series("request_id", [f"r{i}" for i in range(300)]), "ts", "carrier", "origin", pl.col("score").alias("prediction")
    )
    # 24 outcomes a day per (carrier, origin) for 90 days, naive UTC times, a narrower key type on one side
    n = 90 * 24 * 12
    outcomes = pl.DataFrame(
        {
            "carrier": rng.choice(["UA", "AA", "B6", "DL"], size=n),
            "origin": rng.choice(["JFK", "LGA", "EWR"], size=n),
            "outcome_at": [(NOW - timedelta(days=80) + timedelta(minutes=10 * i)).replace(tzinfo=None) for i in range(n)],
            "label": rng.integers(0, 2, size=n).astype(np.int8),
        }
    )
    monitor_ws.lake.write("silver.outcomes", outcomes)
    spec = LabelsSpec(source="silver.outcomes", join=["carrier", "origin"], match="asof", time_column="outcome_at",
                      direction=direction, tolerance="2h")  # type: ignore[arg-type]  # fmt: skip
    everything = load_labels(monitor_ws, spec, keys=["carrier", "origin"])
    bounded = load_labels(monitor_ws, spec, keys=["carrier", "origin"], predictions=preds)
    # the predictions span 20h; with 2h of reach on either side at most 24h of the 90 days' outcomes are candidates
    assert everything.height == n and 0 < bounded.height <= 24 * 6 + 1
    asof = (direction, "2h")
    full = join_labels(preds, everything, on=["carrier", "origin"], asof=asof).sort("request_id")
    part = join_labels(preds, bounded, on=["carrier", "origin"], asof=asof).sort("request_id")
    assert part.height > 100 and part.equals(full)
