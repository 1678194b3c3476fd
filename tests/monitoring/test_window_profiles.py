"""Reference profiles (JSON round trip) and incremental window profiles in constant memory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from steward.errors import NotFound
from steward.monitoring import (
    WindowProfiler,
    build_reference_profile,
    compare_profiles,
    iter_window_profiles,
    load_profile,
    profile_for_model,
    save_profile,
    store_profile,
)
from steward.spec import load_spec
from steward.workspace import Workspace


def _ref_frame(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({"x": rng.normal(size=n), "c": rng.choice(["a", "b", "c"], size=n)})


def test_profile_json_round_trip(tmp_path: Path) -> None:
    frame = _ref_frame(3000)
    pred = np.linspace(0, 1, 3000)
    target = (pred > 0.7).astype(np.int64)
    prof = build_reference_profile(frame, ["x", "c"], ["c"], pred, target, bins=10, sample_size=500, meta={"model": "m"})
    assert prof.columns["x"].sample.size == 500 and prof.columns["x"].counts.sum() == 3000
    assert prof.target is not None and prof.target.kind == "categorical" and prof.target.categories == {"0": 2100, "1": 900}
    path = save_profile(prof, tmp_path / "p.json")
    raw = json.loads(path.read_text())  # plain JSON, no pickle
    assert raw["columns"]["c"]["kind"] == "categorical"
    back = load_profile(path)
    assert back.to_dict() == prof.to_dict()
    assert all(r.value == pytest.approx(0.0, abs=1e-12) for r in compare_profiles(prof, back) if r.detector in ("psi", "js", "wasserstein"))


def test_profile_for_model_uses_the_store(project_dir: Path) -> None:
    ws = Workspace(load_spec(project_dir))
    with pytest.raises(NotFound):
        profile_for_model(ws, "m", "1")
    prof = build_reference_profile(_ref_frame(100), ["x"], [])
    store_profile(ws, prof, "m", "1")
    got = profile_for_model(ws, "m", "1")
    assert got.meta["model"] == "m" and got.columns["x"].count == 100
    ws.close()


def test_one_million_rows_in_chunks_constant_state_equals_one_shot() -> None:
    rng = np.random.default_rng(7)
    ref = build_reference_profile(_ref_frame(5000), ["x", "c"], ["c"], sample_size=1000)
    n, chunk = 1_000_000, 50_000
    x = rng.normal(0.1, 1.2, size=n)
    c = rng.choice(["a", "b", "c", "d"], size=n)
    whole = pl.DataFrame({"x": x, "c": c})
    streaming = WindowProfiler(ref)
    sizes = []
    for i in range(0, n, chunk):
        streaming.update(whole.slice(i, chunk))
        sizes.append(streaming.state_size())
    # the state stops growing once the sample is full (after the first chunk) and stays bounded
    assert max(sizes) == sizes[0] <= 2 * 1000 + 64
    one_shot = WindowProfiler(ref)
    one_shot.update(whole)
    a, b = streaming.profile().columns["x"], one_shot.profile().columns["x"]
    assert np.array_equal(a.counts, b.counts) and a.counts.sum() == n
    assert a.mean == pytest.approx(float(x.mean()), rel=1e-9) and a.std == pytest.approx(float(x.std()), rel=1e-9)
    assert (a.min, a.max) == (float(x.min()), float(x.max()))
    assert streaming.profile().columns["c"].categories == one_shot.profile().columns["c"].categories
    # the bounded sample is uniform: its mean is close to the full mean
    assert a.sample.size == 1000 and abs(a.sample.mean() - x.mean()) < 0.15
    psi_stream = [r.value for r in compare_profiles(ref, streaming.profile(), detectors=["psi"])]
    psi_once = [r.value for r in compare_profiles(ref, one_shot.profile(), detectors=["psi"])]
    assert psi_stream == pytest.approx(psi_once)


def test_time_and_count_windows_and_json_features() -> None:
    ref = build_reference_profile(_ref_frame(500), ["x", "c"], ["c"])
    t0 = datetime(2013, 7, 1, tzinfo=UTC)
    rows = 3 * 24 * 4
    ts = [t0 + timedelta(minutes=15 * i) for i in range(rows)]
    feats = [json.dumps({"x": float(i % 7), "c": "abc"[i % 3]}) for i in range(rows)]
    log = pl.DataFrame({"ts": ts, "features": feats, "prediction": [0.5] * rows}).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    chunks = [log.slice(i, 50) for i in range(0, rows, 50)]
    wins = list(iter_window_profiles(chunks, ref, by="time", size="1d"))
    assert [w.rows for w, _ in wins] == [96, 96, 96]
    assert wins[0][0].start == t0 and wins[0][0].end == t0 + timedelta(days=1)
    assert wins[1][1].columns["x"].count == 96 and sum(wins[1][1].columns["c"].categories.values()) == 96
    counted = list(iter_window_profiles(chunks, ref, by="count", size=100))
    assert [w.rows for w, _ in counted] == [100, 100, 88]


def test_sorted_fast_paths_equal_the_direct_computations() -> None:
    from steward.monitoring._profile import bin_counts, quantile_cuts, sorted_quantiles

    rng = np.random.default_rng(11)
    x = np.round(rng.normal(size=10_001), 1)  # many ties
    s = np.sort(x)
    qs = np.linspace(0, 1, 11)[1:-1]
    assert np.allclose(sorted_quantiles(s, qs), np.quantile(x, qs))
    cuts = quantile_cuts(x, 10)
    assert np.array_equal(cuts, quantile_cuts(s, 10, assume_sorted=True))
    assert np.array_equal(bin_counts(x, cuts), bin_counts(s, cuts, assume_sorted=True))
    assert bin_counts(x, cuts).sum() == x.size


def test_profile_for_model_fetches_the_mlflow_artifact_of_a_registered_version(project_dir: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    ws = Workspace(load_spec(project_dir))
    prof = build_reference_profile(_ref_frame(300), ["x", "c"], ["c"], meta={"from": "training"})
    local = save_profile(prof, tmp_path / "reference_profile.json")
    client = MlflowClient(ws.tracker.uri, ws.tracker.uri)
    run = client.create_run(ws.tracker.experiment_id(ws.spec.project))
    client.log_artifact(run.info.run_id, str(local))  # what the training stage does after fitting
    client.set_terminated(run.info.run_id)
    client.create_registered_model("flights")
    mv = client.create_model_version("flights", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    got = profile_for_model(ws, "flights", mv.version)
    assert got.meta == {"from": "training"} and got.to_dict()["columns"] == prof.to_dict()["columns"]
    with pytest.raises(NotFound):
        profile_for_model(ws, "flights", 99)
    ws.close()
