"""The service layer called as a library: train, gate, promote, move aliases, roll back, reproduce with its verdict."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from _train_synth import flip_labels, make_frame, make_workspace, training_set

from steward import ops
from steward.cli.app import main
from steward.data.lake import TableRef
from steward.errors import GateFailed, NotFound, NotReproducible
from steward.features.training_set import TrainingSet
from steward.workspace import Workspace

GATE = {"min_metric": 0.6, "latency_margin": 50, "latency_slack_ms": 50, "latency_p99_ms": 5000, "slice_margin": 0.05}
PARAMS = {"n_estimators": 10, "num_leaves": 7}


def lake_builder(ws: Workspace, *, pins: dict[str, int] | None = None) -> TrainingSet:
    """The pinned silver table as the training set (what the features stage does, without features)."""
    ref = TableRef.parse("silver.flights")
    ref = ref.at(pins["silver.flights"]) if pins else ws.lake.pin(ref)
    return training_set(ws.lake.read(ref), version=int(ref.version or 0))


def drifting_builder(ws: Workspace, *, pins: dict[str, int] | None = None) -> TrainingSet:
    """Claims the pinned versions but hands back other rows (what a builder that ignores its pins does)."""
    ts = lake_builder(ws, pins=pins)
    ts.frame = flip_labels(ts.frame, "EWR", "2013-09-01")
    return ts


def test_train_gate_promote_move_and_roll_back(tmp_path: Path, shared_tracking_uri: str) -> None:
    ws = make_workspace(tmp_path, project="ops_reg", tracking_uri=shared_tracking_uri, name="ops_model", params=PARAMS, gate=GATE)
    ws.lake.write("silver.flights", make_frame(1500))
    first = ops.train(ws, builder=lake_builder)
    assert first.version is not None and ops.model_aliases(ws, "ops_model")["challenger"] == first.version

    verdict = ops.run_gate(ws)
    assert verdict.passed and verdict.challenger_version == first.version
    move = ops.promote(ws, "ops_model", first.version, reason="first release", actor="alice")
    assert [(c.alias, c.to_version) for c in move.changes] == [("champion", first.version), ("challenger", None)]
    assert move.reload is None  # no server was given
    assert ops.model_aliases(ws, "ops_model") == {"champion": first.version, "previous": None, "challenger": None}

    ws.lake.write("silver.flights", make_frame(1500, seed=4))
    second = ops.train(ws, builder=lake_builder)
    assert second.version == first.version + 1
    # champion moves are gated, whoever asks: no verdict for v2 yet, so nothing moves
    with pytest.raises(GateFailed):
        ops.move_alias(ws, "ops_model", "champion", second.version, reason="skip the gate")
    assert ops.model_aliases(ws, "ops_model")["champion"] == first.version
    # any other alias is set directly
    moved = ops.move_alias(ws, "ops_model", "canary", second.version, reason="for the canary fleet", actor="bob")
    assert [(c.alias, c.from_version, c.to_version, c.action, c.actor) for c in moved.changes] == [
        ("canary", None, second.version, "set", "user:bob")
    ]
    with pytest.raises(NotFound):
        ops.move_alias(ws, "ops_model", "canary", 99, reason="no such version")
    # forcing is recorded in the reason
    forced = ops.move_alias(ws, "ops_model", "champion", second.version, reason="hotfix", force=True, actor="carol")
    assert all(c.reason == "hotfix (forced past the gate)" for c in forced.changes)
    assert ops.model_aliases(ws, "ops_model")["previous"] == first.version

    back = ops.rollback(ws, "ops_model", reason="bad canary")
    assert [(c.alias, c.to_version) for c in back.changes] == [("champion", first.version), ("previous", None)]
    with pytest.raises(NotFound) as not_ours:
        ops.train(ws, model="someone_elses_model")
    assert "not the model this project trains" in not_ours.value.message
    ws.close()


def test_reproduce_returns_or_raises_the_verdict(
    tmp_path: Path, shared_tracking_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = make_workspace(tmp_path, project="ops_repro", tracking_uri=shared_tracking_uri, name="ops_repro_model", params=PARAMS, gate=GATE)
    ws.lake.write("silver.flights", make_frame(1500, seed=3))
    run_id = ops.train(ws, builder=lake_builder).run_id

    same = ops.reproduce(ws, run_id, builder=lake_builder)
    assert same.reproducible and same.to_dict()["reproducible"] is True
    same.raise_for_mismatch()  # nothing to raise

    with pytest.raises(NotReproducible) as failed:
        ops.reproduce(ws, run_id, builder=drifting_builder)
    err = failed.value
    assert (err.code, err.exit_code, err.http_status) == ("training.not_reproducible", 13, 409)
    compared = err.details["reproduce"]
    assert compared["reproducible"] is False and compared["original_hash"] != compared["new_hash"]

    looked = ops.reproduce(ws, run_id, strict=False, builder=drifting_builder)
    assert looked.reproducible is False and looked.same_hash is False
    with pytest.raises(NotReproducible):
        looked.raise_for_mismatch()

    # the CLI shows the comparison, then exits with the library's code
    import steward.training.core as core

    monkeypatch.setattr(core, "_default_builder", drifting_builder)
    monkeypatch.setattr(sys, "argv", ["steward", "--spec", str(tmp_path / "steward.yaml"), "reproduce", run_id])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 13
    shown = capsys.readouterr()
    assert "predictions: original" in shown.out
    assert "error[training.not_reproducible]: run" in " ".join(shown.err.split())  # one red line, wrapped to the terminal
    ws.close()
