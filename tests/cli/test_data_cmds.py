from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steward.cli.app import app
from steward.errors import SpecError, TableNotFound
from steward.spec import load_spec
from steward.workspace import Workspace

runner = CliRunner()

CONTRACT = """\
name: events
version: 1
key: [id]
event_time: ts
columns:
  id: {type: int64}
  ts: {type: datetime}
  amount: {type: float64, min: 0}
"""


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rich sizes tables from COLUMNS; a fresh console picks it up, so cells do not wrap
    import importlib

    cli_app = importlib.import_module("steward.cli.app")
    monkeypatch.setenv("COLUMNS", "220")
    monkeypatch.delitem(cli_app._state, "console", raising=False)


@pytest.fixture
def project(project_dir: Path) -> Path:
    (project_dir / "contracts" / "events.yaml").write_text(CONTRACT)
    land = project_dir / "landing" / "events"
    (land / "2024-01-01.csv").write_text(
        "id,ts,amount\n1,2024-01-01T10:00:00Z,1\n2,2024-01-01T11:00:00Z,-3\n2,2024-01-01T11:00:00Z,4\n3,bad\n"
    )
    (land / "2024-01-02.csv").write_text("id,ts,amount\n1,2024-01-02T10:00:00Z,1\n4,2024-01-02T10:00:00Z,2\n")
    return project_dir


def _run(project: Path, *args: str) -> str:
    res = runner.invoke(app, ["--spec", str(project), *args], terminal_width=200)
    assert res.exit_code == 0, (res.output, res.exception)
    return res.output


def test_ingest_then_pipeline_then_history_and_quarantine(project: Path) -> None:
    out = _run(project, "ingest", "events")
    assert "2 new batch(es)" in out and "bronze.events@0" in out
    assert "skipped" not in out
    out = _run(project, "ingest", "--all")
    assert "0 new batch(es), 2 already landed" in out

    out = _run(project, "pipeline", "run")
    assert "rows read = silver + quarantined + duplicates" in out
    ws = Workspace(load_spec(project))
    rows = ws.metadata.fetchall("SELECT rows_read, rows_silver, rows_quarantined, rows_duplicate FROM batches ORDER BY origin")
    # the first id 2 fails its contract, so the second id 2 is not a duplicate: it lands
    assert [tuple(r.values()) for r in rows] == [(4, 2, 2, 0), (2, 1, 0, 1)]
    assert "(total)" in out and "silver.events@0" in out and "quarantine.events@1" in out
    assert "no" not in out.split("balanced")[-1].split()  # every row balanced

    out = _run(project, "pipeline", "run", "--source", "events", "--from", "2024-01-01", "--to", "2024-01-02")
    assert "nothing new" in out

    out = _run(project, "data", "history", "silver.events")
    assert "promote" in out and "pipeline-" in out
    out = _run(project, "data", "history", "bronze.events")
    first_run = ws.metadata.fetchone("SELECT run_id FROM pipeline_runs WHERE kind = 'ingest' ORDER BY started_at")
    assert first_run is not None and first_run["run_id"] in out  # the one bronze commit, by the first ingest
    assert len(ws.lake.history("bronze.events")) == 1

    out = _run(project, "data", "quarantine", "--source", "events")
    assert "2 row(s)" in out
    for text in ("min", "amount", "-3", "parse", "by rule"):
        assert text in out
    out = _run(project, "data", "quarantine", "--rule", "parse", "--limit", "5")
    assert "1 row(s)" in out and "expected 3 fields" in out

    out = _run(project, "pipeline", "runs")
    assert "ingest" in out and "succeeded" in out


def test_errors_are_steward_errors_and_usage_errors(project: Path) -> None:
    res = runner.invoke(app, ["--spec", str(project), "pipeline", "run", "--source", "nope"])
    assert isinstance(res.exception, SpecError)
    res = runner.invoke(app, ["--spec", str(project), "data", "history", "silver.events"])
    assert isinstance(res.exception, TableNotFound)
    res = runner.invoke(app, ["--spec", str(project), "pipeline", "run", "--from", "2024-13-01"])
    assert res.exit_code == 2 and "YYYY-MM-DD" in res.output
    res = runner.invoke(app, ["--spec", str(project), "ingest"])
    assert res.exit_code == 2 and "--all" in res.output


def test_many_batches_show_totals_unless_asked(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.setattr(importlib.import_module("steward.cli.data_cmds"), "_MAX_BATCH_ROWS", 1)
    out = _run(project, "pipeline", "run")
    assert "2 batches (totals per source shown" in out and "(total)" in out
    assert "2024-01-01.csv" not in out
    (project / "landing" / "events" / "2024-01-03.csv").write_text("id,ts,amount\n7,2024-01-03T10:00:00Z,1\n")
    (project / "landing" / "events" / "2024-01-04.csv").write_text("id,ts,amount\n8,2024-01-04T10:00:00Z,1\n")
    out = _run(project, "pipeline", "run", "--batches")
    assert "2024-01-03.csv" in out and "2024-01-04.csv" in out


def test_a_bad_file_is_reported_not_fatal_and_quarantine_limit_counts_everything(project: Path) -> None:
    land = project / "landing" / "events"
    (land / "2024-01-03.csv").write_bytes(b"")
    (land / "2024-01-04.csv").write_bytes("id,ts,amount\n5,2024-01-04T10:00:00Z,1\n".encode("utf-16"))
    out = _run(project, "pipeline", "run")
    assert "2024-01-03.csv quarantined as a whole" in out and "empty (0 bytes)" in out
    assert "2024-01-04.csv quarantined as a whole" in out and "encoding: utf-16" in out
    out = _run(project, "data", "quarantine", "--limit", "1")
    # one row shown, but the header and the by-rule counts cover the whole quarantine (two file-level records)
    assert "quarantine: 4 failure(s) on 4 row(s), showing 1" in out
    assert re.search(r"events\s*│\s*file\s*│\s*│\s*2\s*│\s*2", out), out
