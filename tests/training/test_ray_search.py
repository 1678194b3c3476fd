"""The same Optuna search, driven by Ray Tune on a small local Ray."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _train_synth import make_frame, make_workspace, training_set

from steward.training import train_model


@pytest.fixture
def local_ray() -> Iterator[None]:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    kwargs: dict[str, Any] = {"num_cpus": 1, "include_dashboard": False, "log_to_driver": False, "object_store_memory": 100 * 1024**2}
    ray.shutdown()  # another test module may have left a local Ray running in this process
    try:
        ray.init(**kwargs)
    except Exception as exc:
        # Ray gives its raylet a fixed 30 s to register; on a saturated machine that can be missed once
        if "timed out during startup" not in str(exc):
            raise
        ray.shutdown()
        ray.init(**kwargs)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_tune_search(tmp_path: Path, shared_tracking_uri: str, local_ray: None) -> None:
    space = {"learning_rate": {"low": 0.05, "high": 0.3, "log": True}, "num_leaves": {"low": 4, "high": 15, "type": "int"}}
    ws = make_workspace(
        tmp_path,
        project="ray",
        tracking_uri=shared_tracking_uri,
        name="ray_model",
        params={"n_estimators": 10},
        search={"n_trials": 2, "engine": "ray", "space": space},
    )
    res = train_model(ws, training_set(make_frame(1200)), register=False)
    assert res.search is not None
    assert res.search["engine"] == "ray" and res.search["n_trials"] == 2
    best = res.search["best_params"]
    assert 0.05 <= best["learning_rate"] <= 0.3 and 4 <= best["num_leaves"] <= 15
    assert res.params["learning_rate"] == best["learning_rate"]
    assert max(t["score"] for t in res.search["trials"]) == pytest.approx(res.search["best_score"])
    assert (ws.root / "ray_results").is_dir()
