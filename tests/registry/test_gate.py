"""The promotion gate: absolute thresholds for a first model, non-inferiority everywhere afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from _train_synth import flip_labels, make_frame, make_workspace, training_set

from steward.errors import GateFailed
from steward.registry import gate_history, latest_gate_verdict, promote, run_gate
from steward.training import train_model
from steward.workspace import Workspace

# margins wide enough that only the property under test can fail
LOOSE_LATENCY = {"latency_p99_ms": 5000, "latency_margin": 20, "latency_slack_ms": 50}


def _frame_with_rare_lga(n: int = 4000, seed: int = 0) -> pl.DataFrame:
    frame = make_frame(n, seed=seed)
    rng = np.random.default_rng(seed + 100)
    return frame.with_columns(pl.Series("origin", rng.choice(["EWR", "JFK", "LGA"], size=frame.height, p=[0.45, 0.45, 0.10])))


def _ws(tmp_path: Path, uri: str, name: str, **model: Any) -> Workspace:
    return make_workspace(tmp_path, project=name, tracking_uri=uri, name=name, **model)


def test_first_model_passes_on_absolute_thresholds_and_verdict_is_recorded(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    from mlflow import MlflowClient

    name = f"first_{unique}"
    ws = _ws(tmp_path, shared_tracking_uri, name)
    res = train_model(ws, training_set(make_frame(2500)))
    verdict = run_gate(ws)
    assert verdict.passed, [c for c in verdict.checks if not c.passed]
    assert verdict.champion_version is None and verdict.challenger_version == res.version
    main = next(c for c in verdict.checks if c.name == "metric.roc_auc")
    assert main.threshold == 0.6 and main.champion is None and main.challenger == pytest.approx(res.metrics["roc_auc"])
    names = {c.name for c in verdict.checks}
    assert {"slice.origin=EWR", "slice.origin=JFK", "slice.origin=LGA", "fairness.origin.roc_auc_gap", "latency.p99_ms"} <= names
    verdict.raise_for_failure()  # no-op when passed

    # recorded: metadata store, MLflow tags + JSON artifact on the challenger's run, version tag, card
    row = latest_gate_verdict(ws, name, 1)
    assert row is not None and row["passed"] is True and len(row["checks"]) == len(verdict.checks)
    client = MlflowClient(shared_tracking_uri)
    tags = client.get_run(res.run_id).data.tags
    assert tags["steward.gate.passed"] == "true" and tags["steward.gate.verdict_id"] == verdict.verdict_id
    body = json.loads(Path(client.download_artifacts(res.run_id, f"gate/verdict-{verdict.verdict_id}.json", str(tmp_path))).read_text())
    assert body["passed"] is True and {c["name"] for c in body["checks"]} == names
    assert client.get_model_version(name, "1").tags["steward.gate"] == "passed"
    card = json.loads((ws.root / "cards" / name / "v1.json").read_text())
    assert card["gate"]["passed"] is True and card["gate"]["verdict_id"] == verdict.verdict_id
    assert "**PASSED** against absolute thresholds" in (ws.root / "cards" / name / "v1.md").read_text()


def test_first_model_below_min_metric_fails_and_blocks(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"weak_{unique}"
    ws = _ws(tmp_path, shared_tracking_uri, name, gate={"min_metric": 0.99, "min_slice_metric": 0.0, **LOOSE_LATENCY})
    train_model(ws, training_set(make_frame(1500)))
    verdict = run_gate(ws)
    assert not verdict.passed
    assert [c.name for c in verdict.failed_checks] == ["metric.roc_auc"]
    with pytest.raises(GateFailed) as info:
        verdict.raise_for_failure()
    assert info.value.code == "registry.gate_failed" and info.value.exit_code != 0
    assert gate_history(ws, name)[0]["passed"] is False
    with pytest.raises(GateFailed):
        promote(ws, name, 1, reason="try anyway")


def test_challenger_worse_on_one_slice_only_fails(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"slice_{unique}"
    gate = {"margin": 0.08, "slice_margin": 0.05, "fairness_margin": 1.0, "min_metric": 0.6, **LOOSE_LATENCY}
    ws = _ws(tmp_path, shared_tracking_uri, name, slices=["origin"], fairness={"column": "carrier", "max_gap": 1.0}, gate=gate)
    frame = _frame_with_rare_lga()
    train_model(ws, training_set(frame))
    assert run_gate(ws).passed
    promote(ws, name, 1, reason="baseline")
    # v2 learned LGA backwards (labels flipped before the validation period): worse there, fine elsewhere
    train_model(ws, training_set(flip_labels(frame, "LGA", "2013-10-01")))
    verdict = run_gate(ws)
    assert not verdict.passed
    assert [c.name for c in verdict.failed_checks] == ["slice.origin=LGA"]
    lga = verdict.failed_checks[0]
    assert lga.champion is not None and lga.challenger is not None and lga.challenger < lga.champion - 0.05
    overall = next(c for c in verdict.checks if c.name == "metric.roc_auc")
    assert overall.passed and overall.champion is not None
    with pytest.raises(GateFailed, match=r"slice\.origin=LGA"):
        verdict.raise_for_failure()


def test_better_challenger_passes_against_champion(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"better_{unique}"
    ws = _ws(tmp_path, shared_tracking_uri, name, slices=["origin"], gate={"margin": 0.005, "slice_margin": 0.03, **LOOSE_LATENCY})
    frame = _frame_with_rare_lga()
    # the champion learned LGA backwards; the challenger is trained on the true labels
    train_model(ws, training_set(flip_labels(frame, "LGA", "2013-10-01")))
    promote(ws, name, 1, reason="bootstrap", force=True)
    train_model(ws, training_set(frame))
    verdict = run_gate(ws)
    assert verdict.passed, [c for c in verdict.checks if not c.passed]
    assert verdict.champion_version == 1 and verdict.challenger_version == 2
    lga = next(c for c in verdict.checks if c.name == "slice.origin=LGA")
    assert lga.challenger is not None and lga.champion is not None and lga.challenger > lga.champion
    promote(ws, name, 2, reason="gate passed")


def test_latency_check_compares_p99_against_champion_and_absolute_bound(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"lat_{unique}"
    loose = {"margin": 1.0, "slice_margin": 1.0, "fairness_margin": 1.0, "min_metric": 0.0, "latency_repeats": 15}
    ws = _ws(
        tmp_path,
        shared_tracking_uri,
        name,
        slices=[],
        fairness=None,
        params={"n_estimators": 5, "num_leaves": 4},
        gate={**loose, "latency_p99_ms": 10_000, "latency_margin": 1.5, "latency_slack_ms": 0.5},
    )
    frame = make_frame(2500)
    train_model(ws, training_set(frame))
    promote(ws, name, 1, reason="fast baseline", force=True)
    heavy = ws.spec.model.model_copy(
        update={"params": {"n_estimators": 600, "num_leaves": 63, "min_child_samples": 2}, "explain_sample": 20}
    )
    train_model(ws, training_set(frame), spec=heavy)
    verdict = run_gate(ws)
    lat = next(c for c in verdict.checks if c.name == "latency.p99_ms")
    assert lat.champion is not None and lat.challenger is not None
    assert not lat.passed and lat.challenger > lat.threshold  # type: ignore[operator]
    assert lat.threshold == pytest.approx(lat.champion * 1.5 + 0.5)
    assert [c.name for c in verdict.failed_checks] == ["latency.p99_ms"]

    # a first model is held to the absolute bound
    name2 = f"lat2_{unique}"
    ws2 = _ws(tmp_path / "b", shared_tracking_uri, name2, slices=[], fairness=None, gate={**loose, "latency_p99_ms": 1e-6})
    train_model(ws2, training_set(frame))
    v2 = run_gate(ws2)
    assert [c.name for c in v2.failed_checks] == ["latency.p99_ms"]
    assert v2.failed_checks[0].threshold == 1e-6 and v2.failed_checks[0].champion is None


FAIRNESS = "fairness.origin.roc_auc_gap"


def test_challenger_with_a_wider_gap_fails_only_the_fairness_check(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"fairgap_{unique}"
    # metric and slice margins wide open: only the gap between origins may grow by at most 0.02
    gate = {"margin": 1.0, "slice_margin": 1.0, "fairness_margin": 0.02, "min_metric": 0.0, "min_slice_metric": 0.0, **LOOSE_LATENCY}
    ws = _ws(tmp_path, shared_tracking_uri, name, slices=["origin"], fairness={"column": "origin", "max_gap": 1.0}, gate=gate)
    frame = _frame_with_rare_lga()
    train_model(ws, training_set(frame))
    promote(ws, name, 1, reason="baseline", force=True)
    # v2 learned LGA backwards: the LGA group falls behind the others, the gap widens
    train_model(ws, training_set(flip_labels(frame, "LGA", "2013-10-01")))
    verdict = run_gate(ws)
    assert not verdict.passed
    assert [c.name for c in verdict.failed_checks] == [FAIRNESS]
    fair = verdict.failed_checks[0]
    assert fair.champion is not None and fair.challenger is not None
    assert fair.threshold == pytest.approx(fair.champion + 0.02)
    assert fair.challenger > fair.champion + 0.02
    with pytest.raises(GateFailed, match=r"fairness\.origin"):
        verdict.raise_for_failure()


def test_first_model_over_max_gap_fails_the_fairness_check(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    name = f"fairabs_{unique}"
    gate = {"min_metric": 0.0, "min_slice_metric": 0.0, **LOOSE_LATENCY}
    ws = _ws(tmp_path, shared_tracking_uri, name, slices=["origin"], fairness={"column": "origin", "max_gap": 0.1}, gate=gate)
    train_model(ws, training_set(flip_labels(_frame_with_rare_lga(), "LGA", "2013-10-01")))
    verdict = run_gate(ws)
    assert verdict.champion_version is None
    assert [c.name for c in verdict.failed_checks] == [FAIRNESS]
    fair = verdict.failed_checks[0]
    assert fair.champion is None and fair.threshold == 0.1
    assert fair.challenger is not None and fair.challenger > 0.1
    assert "OVER the limit" in (ws.root / "cards" / name / "v1.md").read_text()


def test_audit_entries_link_to_the_exact_model_card(tmp_path: Path, shared_tracking_uri: str, unique: str) -> None:
    import hashlib

    name = f"cardlink_{unique}"
    ws = _ws(tmp_path, shared_tracking_uri, name)
    train_model(ws, training_set(make_frame(1500)))
    md, js = ws.root / "cards" / name / "v1.md", ws.root / "cards" / name / "v1.json"

    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    trained_md, trained_js = sha(md), sha(js)
    (run,) = ws.audit.entries(model=name, action="training.run")
    card = run.payload["outputs"]["card"]["value"]
    assert card == {"path": md.relative_to(tmp_path).as_posix(), "sha256": trained_md}
    assert run.payload["outputs"]["card_json"]["value"]["sha256"] == trained_js

    run_gate(ws)  # adds the verdict to the card: the gate entry links to the new card
    (gated,) = ws.audit.entries(model=name, action="registry.gate")
    assert gated.payload["outputs"]["card"]["value"] == {"path": md.relative_to(tmp_path).as_posix(), "sha256": sha(md)}
    assert gated.payload["outputs"]["card_json"]["value"]["sha256"] == sha(js)
    assert sha(md) != trained_md
    assert ws.audit.verify().ok
