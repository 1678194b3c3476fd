"""Kill the pipeline between steps (a real process exit), re-run, and check nothing is lost or duplicated."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from pipeline_helpers import assert_balanced, drop, lake_state, open_project, row

from steward.data.pipeline import BatchAccounting, run_pipeline
from steward.workspace import Workspace

_RUN = "import sys; from steward.workspace import open_workspace; from steward.data import run_pipeline; run_pipeline(open_workspace(sys.argv[1]))"


def _landing(project_dir: Path) -> None:
    drop(
        project_dir,
        "2024-01-02.csv",
        [row(1, "2024-01-02"), row(2, "2024-01-02", amount=-1), row(3, "2024-01-02"), row(3, "2024-01-02", amount=9), "broken line"],
    )
    drop(project_dir, "2024-01-03.csv", [row(1, "2024-01-03"), row(4, "2024-01-01"), row(5, "2024-01-03", kind="z"), row(6, "2024-01-03")])


def _accounting(batches: list[BatchAccounting]) -> list[tuple[object, ...]]:
    return sorted((b.batch_id, b.rows_read, b.rows_silver, b.rows_quarantined, b.rows_duplicate, b.rows_late) for b in batches)


def _no_duplicates(ws: Workspace) -> None:
    b = ws.lake.read("bronze.events")
    assert b.select("_batch_id", "_row").is_duplicated().sum() == 0
    s = ws.lake.read("silver.events")
    assert s["id"].is_duplicated().sum() == 0
    q = ws.lake.read("quarantine.events")
    assert q.select("_batch_id", "_row", "rule", "column").is_duplicated().sum() == 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple[object, ...]], pl.DataFrame, int]:
    """The accounting and silver rows of an uninterrupted run on the same files."""
    d = tmp_path_factory.mktemp("ref")
    (d / "contracts").mkdir()
    (d / "landing" / "events").mkdir(parents=True)
    (d / "steward.yaml").write_text(
        "project: ref\nsources:\n  events:\n    path: landing/events\n    contract: events\ncontracts:\n  events: contracts/events.yaml\n"
    )
    ws = open_project(d)
    _landing(d)
    rep = run_pipeline(ws)
    assert_balanced(rep)
    return (
        _accounting(rep.batches),
        ws.lake.read("silver.events").select("id", "amount", "_date").sort("id"),
        ws.lake.read("quarantine.events").height,
    )


@pytest.mark.parametrize("point", ["after_bronze", "after_quarantine", "after_silver"])
def test_killed_run_then_rerun_keeps_the_accounting(
    project_dir: Path, point: str, reference: tuple[list[tuple[object, ...]], pl.DataFrame, int]
) -> None:
    ref_accounting, ref_silver, ref_quarantined = reference
    ws = open_project(project_dir)
    _landing(project_dir)
    env = {**os.environ, "STEWARD_FAULT": point}
    proc = subprocess.run([sys.executable, "-c", _RUN, str(project_dir)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr

    # the crash left exactly the state of that step, and no batch claims to be done
    state = lake_state(ws)
    statuses = {r["status"] for r in ws.metadata.fetchall("SELECT status FROM batches WHERE source = 'events'")}
    assert "promoted" not in statuses
    assert state["bronze"] == 0
    if point == "after_bronze":
        assert statuses == set() and state["silver"] is None and state["quarantine"] == 0  # parse failures only
    elif point == "after_quarantine":
        assert statuses == {"landed"} and state["silver"] is None and state["quarantine"] == 1
    else:
        assert statuses == {"landed"} and state["silver"] == 0
    crashed = ws.metadata.fetchone("SELECT status FROM pipeline_runs WHERE kind = 'pipeline'")
    assert crashed == {"status": "running"}

    # the re-run finishes the job (taking over the dead process's lock) with the same accounting
    rep = run_pipeline(ws)
    assert_balanced(rep)
    assert _accounting(rep.batches) == ref_accounting
    assert ws.lake.read("silver.events").select("id", "amount", "_date").sort("id").equals(ref_silver)
    assert ws.lake.read("quarantine.events").height == ref_quarantined
    _no_duplicates(ws)
    after = lake_state(ws)
    assert after["bronze"] == 0  # bronze was not written twice
    if point == "after_silver":
        assert after["silver"] == 0  # silver already had the rows: not written again
    crashed = ws.metadata.fetchone("SELECT status, error FROM pipeline_runs WHERE run_id <> ? AND kind = 'pipeline'", (rep.run_id,))
    assert crashed is not None and crashed["status"] == "crashed" and "taken over" in crashed["error"]
    # and once more: nothing to do, nothing committed
    again = run_pipeline(ws)
    assert again.batches == [] and lake_state(ws) == after


def test_killed_ingest_with_only_unparsable_lines_recovers(project_dir: Path) -> None:
    ws = open_project(project_dir)
    drop(project_dir, "2024-01-01.csv", ["bad", "worse"])
    drop(project_dir, "2024-01-02.csv", [row(1, "2024-01-02")])
    env = {**os.environ, "STEWARD_FAULT": "after_bronze"}
    proc = subprocess.run([sys.executable, "-c", _RUN, str(project_dir)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    rep = run_pipeline(ws)
    t = assert_balanced(rep)
    assert (t.batches, t.rows_read, t.rows_silver, t.rows_quarantined) == (2, 3, 1, 2)
    assert ws.lake.read("quarantine.events").height == 2
    shutil.rmtree(project_dir / "landing")  # files gone: the lake and metadata alone say nothing is pending
    assert run_pipeline(ws).batches == []
