"""The loop with the real features stage: each loop trains on the newest silver and gold versions."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "features"))

from features_data import FEATURES_YAML, make_flights, make_planes, make_weather, write_project

from steward.loop import run_loop
from steward.monitoring import profile_for_model
from steward.registry import get_alias_version

# the synthetic labels are random: the gate is opened wide so that only the data plumbing is under test
GATE = {"margin": 1.0, "slice_margin": 1.0, "fairness_margin": 1.0, "min_metric": 0.0, "min_slice_metric": 0.0}
GATE.update({"latency_p99_ms": 5000, "latency_margin": 50, "latency_slack_ms": 50, "batch_size": 100, "latency_repeats": 3})


def test_loop_builds_from_the_newest_silver_and_gold_versions(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"feat_{unique}"
    model = {
        "model": {
            "name": name,
            "params": {"n_estimators": 10, "num_leaves": 7, "min_child_samples": 5},
            "split": {"validation_fraction": 0.25},
            "slices": ["origin"],
            "explain_sample": 50,
            "gate": GATE,
        }
    }
    ws = write_project(
        tmp_path,
        project=name,
        extra_storage=f"  tracking_uri: {shared_tracking_uri}\n",
        features_yaml=FEATURES_YAML + yaml.safe_dump(model),
    )
    ws.lake.write("silver.flights", make_flights(n=600, days=8), partition_by=["_date"])
    ws.lake.write("silver.weather", make_weather(days=8), partition_by=["_date"])
    ws.lake.write("silver.planes", make_planes())

    first = run_loop(ws, rollout=False)  # the default builder: steward.features.build_training_set
    assert first.outcome == "promoted" and first.champion_version == 1
    versions = first.steps[0].outputs["data_versions"]
    assert versions["silver.flights"] == ws.lake.version("silver.flights") == 0
    assert {"gold.weather_at_origin", "gold.carrier_late"} <= set(versions)
    assert "temp" in profile_for_model(ws, name, 1).columns  # a point-in-time feature is profiled for monitoring

    ws.lake.write("silver.flights", make_flights(n=300, days=8, seed=11), partition_by=["_date"])  # new data lands
    second = run_loop(ws, rollout=False, trigger="new data")
    newer = second.steps[0].outputs["data_versions"]
    assert newer["silver.flights"] == 1 and newer["gold.carrier_late"] > versions["gold.carrier_late"]  # gold rebuilt first
    assert second.outcome == "promoted" and get_alias_version(ws, name, "champion") == 2
    assert second.steps[1].inputs["data_versions"] == newer
