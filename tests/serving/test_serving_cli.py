"""``steward rollout ...`` through Typer's CliRunner (registry lookups replaced by a fixed alias map)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from serving_helpers import make_workspace
from typer.testing import CliRunner

from steward.cli.app import app


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_workspace(tmp_path, "models:\n  flights:\n    rollout: {mode: canary, steps: [10, 50, 100], step_window_s: 60}")
    aliases = {("flights", "champion"): "3", ("flights", "challenger"): "4"}
    monkeypatch.setattr("steward.serving.registry_link.resolve_version", lambda ws, name, alias: aliases.get((name, alias)))
    # the registry is a fixed alias map here (no artifacts to verify); verification is tested in tests/ops/test_verify_then_commit.py
    monkeypatch.setattr("steward.ops._rollouts.verify_version", lambda ws, name, version: None)
    monkeypatch.setenv("STEWARD_ACTOR", "ops-alice")
    return tmp_path


def run(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--spec", str(project), *args])
    return result.exit_code, result.output + (str(result.exception) if result.exception else "")


def test_rollout_start_status_weight_abort(project: Path) -> None:
    code, out = run(project, "rollout", "start", "flights", "--json")
    assert code == 0, out
    st = json.loads(out)
    assert (st["mode"], st["weight"], st["champion_version"], st["challenger_version"], st["actor"]) == (
        "canary",
        10.0,
        "3",
        "4",
        "user:ops-alice",  # $STEWARD_ACTOR, as the user it names
    )
    code, out = run(project, "rollout", "start", "flights")
    assert code != 0 and "already running" in out
    assert run(project, "rollout", "weight", "flights", "50")[0] == 0
    code, out = run(project, "rollout", "abort", "flights", "--reason", "p99 too high", "--json")
    st = json.loads(out)
    assert st["state"] == "aborted" and st["weight"] == 0 and [s["action"] for s in st["steps"]] == ["start", "set_weight", "abort"]
    code, out = run(project, "rollout", "status", "flights")
    assert code == 0 and "aborted" in out and "p99 too high" in out


def test_rollout_options_override_the_spec_and_errors_are_one_line(project: Path) -> None:
    code, out = run(project, "rollout", "start", "flights", "--mode", "shadow", "--json")
    assert code == 0 and json.loads(out)["mode"] == "shadow" and json.loads(out)["weight"] == 0
    assert run(project, "rollout", "abort", "flights")[0] == 0
    code, out = run(project, "rollout", "start", "flights", "--mode", "nope")
    assert code != 0 and "invalid rollout policy" in out
    code, out = run(project, "rollout", "status", "other")
    assert code != 0 and "never been rolled out" in out
