"""``steward train / gate / promote / rollback / card / reproduce / registry`` through the real Typer app."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))

from _train_synth import make_frame, make_workspace, training_set

from steward.cli.app import app, main
from steward.data.lake import TableRef
from steward.features.training_set import TrainingSet
from steward.workspace import Workspace

runner = CliRunner()


def _builder(ws: Workspace, *, pins: dict[str, int] | None = None) -> TrainingSet:
    ref = TableRef.parse("silver.flights")
    ref = ref.at(pins["silver.flights"]) if pins else ws.lake.pin(ref)
    return training_set(ws.lake.read(ref), version=int(ref.version or 0))


def test_train_gate_promote_card_rollback_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import steward.training.core as core

    monkeypatch.setattr(core, "_default_builder", _builder)
    monkeypatch.setenv("STEWARD_ACTOR", "carol")
    gate = {"min_metric": 0.6, "latency_margin": 50, "latency_slack_ms": 50, "latency_p99_ms": 5000, "slice_margin": 0.05}
    ws = make_workspace(tmp_path, project="cli", name="cli_model", params={"n_estimators": 10, "num_leaves": 7}, gate=gate)
    ws.lake.write("silver.flights", make_frame(1500))
    spec = ["--spec", str(tmp_path / "steward.yaml")]

    res = runner.invoke(app, [*spec, "train"])
    assert res.exit_code == 0, res.output
    assert "registered cli_model v1 as challenger" in res.output and "by origin" in res.output

    res = runner.invoke(app, [*spec, "gate"])
    assert res.exit_code == 0, res.output
    assert "absolute thresholds" in res.output and "gate passed" in res.output

    res = runner.invoke(app, [*spec, "promote", "cli_model", "1", "--reason", "first release"])
    assert res.exit_code == 0, res.output
    assert "cli_model@champion: (unset) → v1" in res.output and "carol" in res.output

    res = runner.invoke(app, [*spec, "card", "cli_model@champion"])
    assert res.exit_code == 0, res.output
    assert "Model card: cli_model v1" in res.output and "PASSED" in res.output

    res = runner.invoke(app, [*spec, "registry", "list"])
    assert res.exit_code == 0, res.output
    assert "cli_model" in res.output and "champion" in res.output and "passed" in res.output

    run_id = ws.model_registry.get_version("cli_model", 1).run_id
    res = runner.invoke(app, [*spec, "reproduce", run_id])
    assert res.exit_code == 0, res.output
    assert "identical validation predictions" in res.output

    # a second model, then a gate that cannot pass: the CLI exits with GateFailed's code
    ws.lake.write("silver.flights", make_frame(300, seed=5))
    assert runner.invoke(app, [*spec, "train"]).exit_code == 0
    doc = yaml.safe_load((tmp_path / "steward.yaml").read_text())
    doc["model"]["gate"]["margin"] = -1.0  # the challenger would have to beat the champion by a whole AUC point
    (tmp_path / "steward.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setattr(sys, "argv", ["steward", *spec, "gate"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 12

    res = runner.invoke(app, [*spec, "promote", "cli_model", "2", "--reason", "override", "--force", "--actor", "dave"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*spec, "rollback", "cli_model", "--reason", "bad canary"])
    assert res.exit_code == 0, res.output
    assert "cli_model@champion: v2 → v1" in res.output
    res = runner.invoke(app, [*spec, "registry", "history", "cli_model", "--json"])
    assert res.exit_code == 0, res.output
    assert "bad canary" in res.output and "dave" in res.output and "override (forced past the gate)" in res.output
