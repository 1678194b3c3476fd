"""Training runs: split, tracking (reproducibility triple), model logging, registry, card, reproduce."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from _train_synth import FEATURES, make_frame, make_workspace, training_set

from steward.data.lake import TableRef
from steward.errors import SpecError, ValidationFailed
from steward.features.training_set import TrainingSet
from steward.modeling import encode, fit_encoding, score_frame, split_by_time
from steward.spec import SplitSpec
from steward.training import reproduce, train, train_model
from steward.training.reproducibility import environment_hash, git_info
from steward.workspace import Workspace


def test_time_split_has_no_overlap_and_respects_fraction() -> None:
    frame = make_frame(1000)
    train_df, valid_df, cut = split_by_time(frame, "time_hour", SplitSpec(validation_fraction=0.25))
    assert train_df["time_hour"].max() < valid_df["time_hour"].min()
    assert train_df.height + valid_df.height == frame.height
    assert 0.2 < valid_df.height / frame.height < 0.3
    assert cut.startswith("2013-")
    tr2, va2, cut2 = split_by_time(frame, "time_hour", SplitSpec(validation_from="2013-07-01"))
    assert cut2.startswith("2013-07-01")
    assert tr2["time_hour"].dt.month().max() <= 6 and va2["time_hour"].dt.month().min() >= 7
    with pytest.raises(ValidationFailed, match="leaves"):
        split_by_time(frame, "time_hour", SplitSpec(validation_from="2014-06-01"))


def test_encoding_maps_unknown_categories_to_nan() -> None:
    frame = make_frame(200)
    enc = fit_encoding(frame, FEATURES, ["origin", "carrier"])
    assert enc.categorical["origin"] == ["EWR", "JFK", "LGA"]
    new = frame.head(3).with_columns(pl.Series("origin", ["JFK", "ZZZ", None]))
    x = encode(new, enc)
    assert list(x.columns) == FEATURES
    assert x["origin"].iloc[0] == 1.0
    assert np.isnan(x["origin"].iloc[1]) and np.isnan(x["origin"].iloc[2])
    assert str(x.dtypes.iloc[3]) == "float64"


def test_train_tracks_triple_logs_model_registers_and_writes_card(tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    (tmp_path / "requirements.lock").write_text("lightgbm==4.7.0\n")
    ws = make_workspace(tmp_path, project="tracked")
    steps: list[str] = []
    res = train_model(ws, training_set(make_frame(2500), version=7), progress=lambda stage, done, total: steps.append(stage))

    # default tracking: SQLite and artifacts under ROOT
    assert (ws.root / "mlflow.db").exists()
    assert any((ws.root / "mlartifacts").rglob("MLmodel"))
    client = MlflowClient(f"sqlite:///{ws.root / 'mlflow.db'}")
    run = client.get_run(res.run_id)
    tags = run.data.tags
    assert tags["steward.git_sha"] == "none" and tags["steward.git_dirty"] == "unknown"  # tmp_path is not a git repo
    assert json.loads(tags["steward.data_versions"]) == {"silver.flights": 7}
    assert tags["steward.env_hash"] == hashlib.sha256(b"lightgbm==4.7.0\n").hexdigest()
    assert tags["steward.prediction_hash"] == res.prediction_hash
    assert run.data.params["n_estimators"] == "30" and run.data.params["seed"] == "42"
    m = run.data.metrics
    assert m["valid_roc_auc"] == pytest.approx(res.metrics["roc_auc"])
    assert res.metrics["roc_auc"] is not None and res.metrics["roc_auc"] > 0.65
    for origin in ("EWR", "JFK", "LGA"):
        assert f"slice.origin.{origin}.roc_auc" in m
    assert "fairness.origin.roc_auc.gap" in m
    assert res.fairness is not None and res.fairness["gap"] == pytest.approx(m["fairness.origin.roc_auc.gap"])
    assert set(res.slice_metrics) == {"origin", "carrier"}
    assert res.feature_importance["method"] == "shap_tree" and set(res.feature_importance["importance"]) == set(FEATURES)
    assert steps and steps[0].startswith("splitting")

    # the model: LightGBM flavour (a Booster in LightGBM's text format), signature, example, exact pins
    assert res.version == 1
    mv = client.get_model_version_by_alias("flights_delay", "challenger")
    assert int(mv.version) == 1 and mv.run_id == res.run_id
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(tmp_path / "dl")))
    mlmodel = (local / "MLmodel").read_text()
    assert "lightgbm.basic.Booster" in mlmodel and "signature:" in mlmodel
    assert (local / "model.lgb").exists() and (local / "input_example.json").exists()
    reqs = (local / "requirements.txt").read_text().split()
    assert any(r.startswith("lightgbm==") for r in reqs) and any(r.startswith("mlflow==3.17") for r in reqs)
    manifest = json.loads(mv.tags["steward.manifest"])
    assert "model.lgb" in manifest and all(len(h) == 64 for h in manifest.values())

    # the card: markdown + json under ROOT/cards and logged with the run
    assert res.card_path == ws.root / "cards" / "flights_delay" / "v1.md"
    md = res.card_path.read_text()
    for section in (
        "## Intended use",
        "## Training data",
        "silver.flights@7",
        "### By origin",
        "## Fairness",
        "## Feature importance",
        "## Limitations",
        "## Gate",
    ):
        assert section in md
    card = json.loads((ws.root / "cards" / "flights_delay" / "v1.json").read_text())
    assert card["training_data"]["rows"] == res.rows and card["gate"] is None
    logged = {a.path for a in client.list_artifacts(res.run_id, "card")}
    assert logged == {"card/v1.md", "card/v1.json"}


def test_git_info_and_environment_hash(tmp_path: Path) -> None:
    assert git_info(tmp_path).sha is None
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "a.txt").write_text("1")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    info = git_info(repo)
    assert info.sha is not None and len(info.sha) == 40 and info.dirty is False
    (repo / "a.txt").write_text("2")
    assert git_info(repo).dirty is True and git_info(repo).label.endswith("+dirty")
    (repo / "requirements.lock").write_text("x==1\n")
    assert environment_hash(repo) == (hashlib.sha256(b"x==1\n").hexdigest(), str(repo / "requirements.lock"))


def _lake_builder(frame_table: str = "silver.flights"):  # type: ignore[no-untyped-def]
    """A training-set builder that reads the lake at the pinned version (like the features stage does)."""

    def build(ws: Workspace, *, pins: dict[str, int] | None = None) -> TrainingSet:
        ref = TableRef.parse(frame_table)
        ref = ref.at(pins[ref.table]) if pins and ref.table in pins else ws.lake.pin(ref)
        return training_set(ws.lake.read(ref), version=int(ref.version or 0), table=frame_table)

    return build


def test_reproduce_rebuilds_from_pins_and_hashes_the_same(tmp_path: Path, shared_tracking_uri: str) -> None:
    # bagging makes the seed matter, so equal hashes prove the seed was fixed and reused
    params = {"n_estimators": 30, "num_leaves": 15, "subsample": 0.7, "subsample_freq": 1, "colsample_bytree": 0.8}
    ws = make_workspace(tmp_path, project="repro", tracking_uri=shared_tracking_uri, name="repro_model", params=params)
    v0 = ws.lake.write("silver.flights", make_frame(2000, seed=1))
    builder = _lake_builder()
    res = train(ws, builder=builder)
    assert res.data_versions == {"silver.flights": v0}
    # new data lands after training: reproduce must still read the pinned version
    v1 = ws.lake.write("silver.flights", make_frame(500, seed=2))
    assert v1 > v0
    out = reproduce(ws, res.run_id, builder=builder)
    assert out.same_hash is True
    assert out.new_hash == out.original_hash == res.prediction_hash
    assert out.data_versions == {"silver.flights": v0}
    assert out.reproduce_run_id != res.run_id
    assert out.metrics["roc_auc"] == pytest.approx(res.metrics["roc_auc"])

    # the hash is sensitive: a different seed or different data changes it
    pinned = ws.lake.read(TableRef.parse("silver.flights").at(v0))
    other = train_model(ws, training_set(pinned, version=v0), spec=ws.spec.model.model_copy(update={"seed": 7}), register=False)
    assert other.prediction_hash != res.prediction_hash
    latest = train_model(ws, training_set(ws.lake.read("silver.flights"), version=v1), register=False)
    assert latest.prediction_hash != res.prediction_hash


def test_optuna_search_runs_trials_and_uses_best_params(tmp_path: Path, shared_tracking_uri: str) -> None:
    ws = make_workspace(
        tmp_path,
        project="search",
        tracking_uri=shared_tracking_uri,
        name="search_model",
        search={
            "n_trials": 3,
            "space": {"learning_rate": {"low": 0.02, "high": 0.3, "log": True}, "num_leaves": {"low": 4, "high": 31, "type": "int"}},
        },
    )
    res = train_model(ws, training_set(make_frame(2000)), register=False)
    assert res.search is not None and res.search["engine"] == "optuna" and res.search["n_trials"] == 3
    best = res.search["best_params"]
    assert 0.02 <= best["learning_rate"] <= 0.3 and 4 <= best["num_leaves"] <= 31
    assert res.params["num_leaves"] == best["num_leaves"]
    assert res.search["inner_validation_from"] < "2013-10-01"  # trials never see the validation period
    assert max(t["score"] for t in res.search["trials"]) == pytest.approx(res.search["best_score"])


def test_sklearn_estimator_is_logged_with_skops_and_loads_verified(tmp_path: Path, shared_tracking_uri: str) -> None:
    from steward.registry import load_verified_model

    ws = make_workspace(
        tmp_path,
        project="sk",
        tracking_uri=shared_tracking_uri,
        name="sk_model",
        estimator="sklearn.linear_model.LogisticRegression",
        params={"max_iter": 200},
    )
    ts = training_set(make_frame(1500))
    res = train_model(ws, ts)
    assert res.feature_importance["method"] == "permutation_roc_auc"
    assert res.metrics["roc_auc"] is not None and res.metrics["roc_auc"] > 0.6
    model, info = load_verified_model(ws, "sk_model", "challenger")
    assert type(model).__name__ == "Pipeline"
    assert info.flavors["sklearn"]["serialization_format"] == "skops"
    valid = ts.frame.filter(pl.col("time_hour") >= pl.lit("2013-10-01").str.to_datetime(time_zone="UTC"))
    from steward.modeling import prediction_hash

    assert prediction_hash(score_frame(model, info, valid.sort("time_hour", "flight_id"))) == res.prediction_hash


def test_spec_errors_are_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"model\.estimatr"):
        make_workspace(tmp_path / "a", estimatr="x")
    ws = make_workspace(tmp_path / "b", slices=["tailnum"])
    with pytest.raises(ValidationFailed, match="tailnum"):
        train_model(ws, training_set(make_frame(300)))
    ws = make_workspace(tmp_path / "c", estimator="nosuchpkg.Model")
    with pytest.raises(SpecError, match="cannot be imported"):
        train_model(ws, training_set(make_frame(300)))
