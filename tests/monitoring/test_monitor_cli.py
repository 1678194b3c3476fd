"""Bare ``steward monitor`` runs one pass, like ``steward monitor run``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from monitor_helpers import flights_like, write_log
from typer.testing import CliRunner

from steward.cli.app import app
from steward.workspace import Workspace

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide(wide_console: None) -> None:
    """Every test here reads Rich tables: print them wide."""


def test_bare_monitor_runs_one_pass(monitor_ws: Workspace, project_dir: Path) -> None:
    now = datetime.now(UTC)
    write_log(monitor_ws, flights_like(300, seed=61, shift=40.0, start=now - timedelta(hours=20), span=timedelta(hours=19)))
    r = runner.invoke(app, ["--spec", str(project_dir), "monitor"])
    assert r.exit_code == 0, r.output
    assert "flights v1" in r.output and "feature_drift" in r.output
    row = monitor_ws.metadata.fetchone("SELECT COUNT(*) AS n FROM monitor_verdicts WHERE model = ?", ("flights",))
    assert row is not None and row["n"] == 1
    # the subcommands are still there, and --help still helps
    r = runner.invoke(app, ["--spec", str(project_dir), "monitor", "--help"])
    assert r.exit_code == 0 and "report" in r.output and "rules" in r.output
