"""End to end with the features stage: ``train`` builds the pinned set, ``reproduce`` rebuilds it from the pins."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "features"))

from features_data import FEATURES_YAML, make_flights, make_planes, make_weather, write_project

from steward.training import reproduce, train

MODEL = {
    "model": {
        "name": "feat_model",
        "params": {"n_estimators": 15, "num_leaves": 7, "min_child_samples": 5},
        "split": {"validation_fraction": 0.25},
        "slices": ["origin"],
        "fairness": {"column": "origin", "max_gap": 1.0, "min_group_size": 10},
        "explain_sample": 100,
    }
}


def test_train_and_reproduce_through_the_features_stage(tmp_path: Path, shared_tracking_uri: str) -> None:
    extra = f"  tracking_uri: {shared_tracking_uri}\n"
    ws = write_project(tmp_path, project="feat_train", extra_storage=extra, features_yaml=FEATURES_YAML + yaml.safe_dump(MODEL))
    ws.lake.write("silver.flights", make_flights(n=800, days=8), partition_by=["_date"])
    ws.lake.write("silver.weather", make_weather(days=8), partition_by=["_date"])
    ws.lake.write("silver.planes", make_planes())

    res = train(ws)
    assert res.version == 1
    assert {"silver.flights", "gold.weather_at_origin", "gold.carrier_late"} <= set(res.data_versions)
    assert res.rows["train"] > 0 and res.rows["validation"] > 0
    assert "temp" in res.feature_importance["importance"]  # a point-in-time feature made it into the model

    # later data must not leak into the reproduction: it reads the pinned versions
    ws.lake.write("silver.flights", make_flights(n=50, days=8, seed=99))
    out = reproduce(ws, res.run_id)
    assert out.same_hash, (out.original_hash, out.new_hash)
    assert out.data_versions == res.data_versions
