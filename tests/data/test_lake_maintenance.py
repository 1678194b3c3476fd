"""Compaction and pin-aware vacuum of lake tables; the prediction log compacts itself."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from steward.cli import app
from steward.data.runs import record_input
from steward.errors import StewardError
from steward.serving.predlog import PredictionLogger, PredictionRecord
from steward.spec import load_spec
from steward.workspace import Workspace


def _files(ws: Workspace, table: str) -> int:
    return len(ws.lake._table(table).file_uris())


def _append(ws: Workspace, n: int) -> None:
    for i in range(n):
        ws.lake.write("logs.events", pl.DataFrame({"_date": ["2024-01-01", "2024-01-02"], "x": [2 * i, 2 * i + 1]}), partition_by=["_date"])


def test_compact_folds_files_keeps_rows_and_history(project_dir: Path) -> None:
    ws = Workspace(load_spec(project_dir))
    _append(ws, 6)
    assert _files(ws, "logs.events") == 12
    out = ws.lake.compact("logs.events")
    assert out["version"] == 6 and out["files_removed"] == 12 and out["files_added"] == 2
    assert _files(ws, "logs.events") == 2
    assert sorted(ws.lake.read("logs.events")["x"].to_list()) == list(range(12))
    assert ws.lake.count("logs.events@3") == 8  # older versions are still readable
    # the recorded history carries the total forward without re-counting
    top = ws.lake.history("logs.events")[0]
    assert (top["operation"], top["rows_written"], top["total_rows"]) == ("compact", 0, 12)
    ws.close()


def test_vacuum_keeps_every_pinned_version_and_drops_the_rest(project_dir: Path) -> None:
    ws = Workspace(load_spec(project_dir))
    _append(ws, 4)
    record_input(ws.metadata, "run-train-1", "logs.events@1")  # a training set read version 1
    ws.lake.compact("logs.events")
    dry = ws.lake.vacuum("logs.events", retention_hours=0)
    assert dry["dry_run"] and dry["kept_versions"] == [1] and _files(ws, "logs.events") == 2
    # version 1's two files are kept; the six files only versions 2-3 needed go
    done = ws.lake.vacuum("logs.events", retention_hours=0, dry_run=False)
    assert len(done["files"]) == len(dry["files"]) == 4
    assert ws.lake.count("logs.events@1") == 4  # the pinned training set still reads
    with pytest.raises((StewardError, OSError)):
        ws.lake.count("logs.events@2")  # an unpinned old version is gone
    assert sorted(ws.lake.read("logs.events")["x"].to_list()) == list(range(8))
    ws.close()


def test_vacuum_cli_lists_first_deletes_with_yes_and_audits(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project_dir)
    ws = Workspace(load_spec(project_dir))
    _append(ws, 3)
    ws.close()
    runner = CliRunner()
    r = runner.invoke(app, ["data", "compact", "logs.events"])
    assert r.exit_code == 0 and "6 file(s) folded into 2" in r.output
    r = runner.invoke(app, ["data", "vacuum", "logs.events", "--retention-hours", "0"])
    assert r.exit_code == 0 and "would delete 6 file(s)" in r.output and "--yes" in r.output
    r = runner.invoke(app, ["data", "vacuum", "logs.events", "--retention-hours", "0", "--yes"])
    assert r.exit_code == 0 and "deleted 6 file(s)" in r.output
    ws = Workspace(load_spec(project_dir))
    entries = [e for e in ws.audit.entries() if e.action == "data.vacuum"]
    assert len(entries) == 1 and entries[0].payload["details"]["files_deleted"] == 6
    ws.close()


def test_prediction_log_compacts_the_day_it_writes(project_dir: Path) -> None:
    ws = Workspace(load_spec(project_dir))
    plog = PredictionLogger(lake=ws.lake, flush_rows=2, flush_interval_s=0.01, compact_every=3)
    plog.start()
    now = time.time()
    for i in range(12):
        assert plog.log(PredictionRecord(f"r{i}", now, "m", "1", "champion", {"a": i}, 0.5, 1.0))
        if i % 2 == 1:
            plog.flush()
    plog.close()
    assert plog.written == 12 and plog.compactions >= 1
    ops = [h["operation"] for h in ws.lake.history("logs.predictions")]
    assert "compact" in ops
    assert ws.lake.count("logs.predictions") == 12  # compaction never loses or duplicates a row
    assert _files(ws, "logs.predictions") < plog.writes
    ws.close()
