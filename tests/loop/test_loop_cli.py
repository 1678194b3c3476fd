"""``steward loop`` and ``steward loop history`` through the real Typer app."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from loop_helpers import TABLE, lake_set, make_frame, make_loop_workspace
from typer.testing import CliRunner

from steward.cli.app import app, main
from steward.registry import get_alias_version

runner = CliRunner()


def test_loop_cli_runs_promotes_and_lists_history(
    tmp_path: Path, shared_tracking_uri: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import steward.loop._run as loop_run

    monkeypatch.setattr(loop_run, "_default_builder", lake_set)
    name = f"cli_{unique}"
    ws = make_loop_workspace(tmp_path, name, shared_tracking_uri, rollout=False)
    ws.lake.write(TABLE, make_frame(2500, seed=30))
    spec = ["--spec", str(tmp_path / "steward.yaml")]

    # no rollout policy: refused with the SpecError's exit code and a hint naming --no-rollout
    monkeypatch.setattr(sys, "argv", ["steward", *spec, "loop", "--trigger", "cli"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2

    res = runner.invoke(app, [*spec, "loop", "--trigger", "cli", "--no-rollout"])
    assert res.exit_code == 0, res.output
    assert f"{name} loop" in res.output and "promoted" in res.output and "training_set" in res.output
    assert get_alias_version(ws, name, "champion") == 1

    res = runner.invoke(app, [*spec, "loop", "--no-rollout"])  # no trigger: the monitor has asked for nothing
    assert res.exit_code == 0, res.output
    assert "nothing to do" in res.output

    res = runner.invoke(app, [*spec, "loop", "history", "--json"])
    assert res.exit_code == 0, res.output
    runs = json.loads(res.output)
    assert [(r["model"], r["trigger"], r["state"], r["outcome"]) for r in runs] == [(name, "cli", "finished", "promoted")]
    assert runs[0]["context"]["challenger_version"] == 1
    res = runner.invoke(app, [*spec, "loop", "history"])
    assert res.exit_code == 0 and runs[0]["loop_id"] in res.output
