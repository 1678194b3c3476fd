"""Verified loading: artifacts must match their SHA-256 manifest before anything is deserialized."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _train_synth import make_frame, make_workspace, training_set

from steward.errors import DataError
from steward.modeling import load_native, prediction_hash, score_frame
from steward.registry import build_manifest, load_verified_model, verify_artifacts
from steward.training import train_model


def test_verify_artifacts_names_changed_missing_and_unexpected(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_text("2")
    manifest = build_manifest(tmp_path)
    assert set(manifest) == {"a", "sub/b"}
    verify_artifacts(tmp_path, manifest)
    (tmp_path / "registered_model_meta").write_text("written by MLflow on download")
    verify_artifacts(tmp_path, manifest)  # MLflow's own download marker is not model content
    (tmp_path / "a").write_text("tampered")
    (tmp_path / "sub" / "b").unlink()
    (tmp_path / "evil.pkl").write_text("x")
    with pytest.raises(DataError) as info:
        verify_artifacts(tmp_path, manifest)
    assert info.value.code == "registry.artifact_mismatch"
    assert info.value.details == {"changed": ["a"], "missing": ["sub/b"], "unexpected": ["evil.pkl"]}
    with pytest.raises(DataError):
        verify_artifacts(tmp_path, {})


def test_load_verified_model_round_trip_and_refuses_tampered_artifacts(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"load_{unique}"
    ws = make_workspace(tmp_path, project=name, tracking_uri=shared_tracking_uri, name=name)
    ts = training_set(make_frame(2000))
    res = train_model(ws, ts)
    model, info = load_verified_model(ws, name, "challenger")
    assert type(model).__name__ == "Booster"
    assert info.metadata["steward"]["encoding"]["features"] == ts.feature_names
    valid = ts.frame.filter(ts.frame["time_hour"].dt.month() >= 10)
    assert prediction_hash(score_frame(model, info, valid)) == res.prediction_hash
    same, _ = load_verified_model(ws, name, 1)
    assert same.model_to_string() == model.model_to_string()

    # tamper with the stored model file: loading must refuse before deserializing
    stored = next(p for p in (ws.root / "mlartifacts").rglob("model.lgb"))
    stored.write_text(stored.read_text().replace("learning_rate", "learning_ratE", 1))
    with pytest.raises(DataError) as err:
        load_verified_model(ws, name, "challenger")
    assert err.value.code == "registry.artifact_mismatch" and err.value.details["changed"] == ["model.lgb"]


def test_pickle_models_are_never_loaded(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text(
        json.dumps({"flavors": {"sklearn": {"pickled_model": "model.pkl", "serialization_format": "cloudpickle"}}})
    )
    (tmp_path / "model.pkl").write_bytes(b"not even read")
    with pytest.raises(DataError) as info:
        load_native(tmp_path)
    assert info.value.code == "registry.unsafe_format"
