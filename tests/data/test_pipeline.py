from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from pipeline_helpers import assert_balanced, drop, lake_state, open_project, row, silver

from steward.data.pipeline import run_pipeline
from steward.data.quarantine import quarantine_counts, read_quarantine
from steward.data.runs import get_run, source_lock
from steward.errors import DataError, LockHeld


def test_bad_rows_duplicates_and_late_rows_with_accounting(project_dir: Path) -> None:
    ws = open_project(project_dir)
    drop(
        project_dir,
        "2024-01-02.csv",
        [
            row(1, "2024-01-02"),
            row(2, "2024-01-02", amount=-5),  # bad: min
            row(3, "2024-01-02", kind="z"),  # bad: allowed
            row(4, "2024-01-02", amount="abc"),  # bad: type
            row(5, "2024-01-02", amount=1),
            row(5, "2024-01-02", amount=2),  # duplicate within the batch (the first by _row wins)
            "6,2024-01-02T10:00:00Z",  # unparsable line
        ],
    )
    r1 = run_pipeline(ws)
    t1 = assert_balanced(r1)
    assert (t1.rows_read, t1.rows_silver, t1.rows_quarantined, t1.rows_duplicate, t1.rows_late) == (7, 2, 4, 1, 0)
    s = silver(ws)
    assert s["id"].to_list() == [1, 5] and s["amount"].to_list() == [1.0, 1.0]
    assert s.columns == ["id", "ts", "amount", "kind", "_batch_id", "_ingested_at", "_date"]
    assert s.schema["ts"] == pl.Datetime("us", "UTC") and s.schema["id"] == pl.Int64
    assert set(s["_date"]) == {"2024-01-02"}
    q = read_quarantine(ws, source="events")
    assert sorted(zip(q["_row"].to_list(), q["rule"].to_list(), strict=True)) == [(2, "min"), (3, "allowed"), (4, "type"), (7, "parse")]
    bad = q.filter(pl.col("rule") == "type").row(0, named=True)
    assert bad["column"] == "amount" and bad["value"] == "abc" and json.loads(bad["raw"])["amount"] == "abc"
    # never in silver
    assert not set(s["id"].to_list()) & {2, 3, 4, 6}

    # batch 2: a key already in silver (duplicate across batches), new days, and a late row
    drop(
        project_dir,
        "2024-01-03.csv",
        [
            row(1, "2024-01-03"),  # duplicate of batch 1's key
            row(7, "2024-01-03"),
            row(8, "2024-01-01"),  # late: before the newest partition (2024-01-02)
            row(9, "2024-01-04"),
        ],
    )
    r2 = run_pipeline(ws)
    t2 = assert_balanced(r2)
    assert (t2.batches, t2.rows_read, t2.rows_silver, t2.rows_quarantined, t2.rows_duplicate, t2.rows_late) == (1, 4, 3, 0, 1, 1)
    s = silver(ws)
    assert s["id"].to_list() == [1, 5, 7, 8, 9]
    assert s.filter(pl.col("id") == 1)["_date"].item() == "2024-01-02"  # the first one stays
    assert s.filter(pl.col("id") == 8)["_date"].item() == "2024-01-01"  # its own partition
    assert (ws.spec.root / "lake" / "silver" / "events" / "_date=2024-01-01").is_dir()
    # a later batch whose rows are all before the newest partition: all late
    drop(project_dir, "2024-01-05.csv", [row(10, "2024-01-03"), row(11, "2024-01-04")])
    t3 = assert_balanced(run_pipeline(ws))
    assert (t3.rows_silver, t3.rows_late) == (2, 1)


def test_accounting_is_stored_per_batch_and_per_run(project_dir: Path) -> None:
    ws = open_project(project_dir)
    drop(project_dir, "2024-01-01.csv", [row(1, "2024-01-01"), row(1, "2024-01-01"), row(2, "2024-01-01", amount=-1)])
    rep = run_pipeline(ws)
    run = get_run(ws.metadata, rep.run_id)
    assert run["status"] == "succeeded" and run["kind"] == "pipeline"
    assert run["summary"]["totals"] == rep.totals.to_dict()
    assert run["summary"]["totals"]["rows_read"] == 3
    assert run["summary"]["versions"] == {"bronze.events": 0, "quarantine.events": 0, "silver.events": 0}
    b = ws.metadata.fetchone("SELECT * FROM batches WHERE source = 'events'")
    assert b is not None
    assert (b["status"], b["rows_read"], b["rows_silver"], b["rows_quarantined"], b["rows_duplicate"], b["rows_late"]) == (
        "promoted",
        3,
        1,
        1,
        1,
        0,
    )
    assert b["run_id"] == rep.run_id and json.loads(b["details"])["silver_version"] == 0
    lineage = ws.metadata.fetchall("SELECT direction, table_ref FROM lineage WHERE run_id = ? ORDER BY direction, table_ref", (rep.run_id,))
    assert [(r["direction"], r["table_ref"]) for r in lineage] == [
        ("input", "bronze.events@0"),
        ("output", "bronze.events@0"),
        ("output", "quarantine.events@0"),
        ("output", "silver.events@0"),
    ]
    hist = ws.lake.history("silver.events")
    assert hist[0]["run_id"] == rep.run_id and hist[0]["rows_written"] == 1 and hist[0]["total_rows"] == 1
    assert rep.refs() == ["bronze.events@0", "quarantine.events@0", "silver.events@0"]


def test_rerun_and_reingest_make_no_commit(project_dir: Path) -> None:
    ws = open_project(project_dir)
    drop(project_dir, "2024-01-01.csv", [row(1, "2024-01-01"), row(2, "2024-01-01", kind="x"), "broken"])
    assert_balanced(run_pipeline(ws))
    before = lake_state(ws)
    hist = {k: len(ws.lake.history(f"{k}.events")) for k in before}
    again = run_pipeline(ws)
    assert again.batches == [] and again.totals.rows_read == 0
    assert lake_state(ws) == before
    assert {k: len(ws.lake.history(f"{k}.events")) for k in before} == hist
    assert ws.lake.read("quarantine.events").height == 2


def test_backfill_by_date_range_is_idempotent(project_dir: Path) -> None:
    ws = open_project(project_dir)
    for d in ("2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"):
        drop(project_dir, f"{d}.csv", [row(int(d[-1]), d), row(int(d[-1]) * 10, d)])
    drop(project_dir, "reference.csv", [row(99, "2024-01-01")])  # undated: always included
    r1 = run_pipeline(ws, date_from=date(2024, 1, 2), date_to=date(2024, 1, 3))
    t1 = assert_balanced(r1)
    assert sorted(b.origin.rsplit("/", 1)[1] for b in r1.batches) == ["2024-01-02.csv", "2024-01-03.csv", "reference.csv"]
    assert t1.rows_silver == 5
    assert silver(ws)["id"].to_list() == [2, 3, 20, 30, 99]
    state = lake_state(ws)
    r2 = run_pipeline(ws, date_from=date(2024, 1, 2), date_to=date(2024, 1, 3))
    assert r2.batches == [] and lake_state(ws) == state
    # the rest of the range: the earlier day arrives late, into its own partition
    r3 = run_pipeline(ws)
    t3 = assert_balanced(r3)
    assert sorted(b.origin.rsplit("/", 1)[1] for b in r3.batches) == ["2024-01-01.csv", "2024-01-04.csv"]
    assert (t3.rows_silver, t3.rows_late) == (4, 2)
    assert silver(ws).height == 9 and silver(ws)["id"].n_unique() == 9
    with pytest.raises(DataError, match="after"):
        run_pipeline(ws, date_from=date(2024, 1, 3), date_to=date(2024, 1, 1))


def test_transient_io_errors_are_retried(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import deltalake

    ws = open_project(project_dir)
    drop(project_dir, "2024-01-01.csv", [row(1, "2024-01-01"), row(2, "2024-01-01")])
    real = deltalake.write_deltalake
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] in (1, 3):
            raise OSError("connection reset by peer")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(deltalake, "write_deltalake", flaky)
    rep = run_pipeline(ws)
    assert_balanced(rep)
    assert calls["n"] == 4  # bronze and silver each failed once, then landed
    assert silver(ws).height == 2
    assert [h["version"] for h in ws.lake.history("bronze.events")] == [0]  # no partial or double commit


def test_a_second_run_on_the_same_source_is_refused_and_stale_locks_are_taken_over(project_dir: Path) -> None:
    ws = open_project(project_dir)
    drop(project_dir, "2024-01-01.csv", [row(1, "2024-01-01")])
    with source_lock(ws.metadata, "events", "other-run"), pytest.raises(LockHeld):
        # the same process's lock under another run id: a live holder
        ws.metadata.execute("UPDATE locks SET owner = ? WHERE name = 'pipeline:events'", ("elsewhere-host:1:other-run",))
        run_pipeline(ws)
    ws.metadata.execute("DELETE FROM locks")
    # a holder on this host whose process is gone (a crash) is taken over
    import socket

    ws.metadata.execute(
        "INSERT INTO locks (name, owner, expires_at) VALUES ('pipeline:events', ?, 9e18)",
        (f"{socket.gethostname()}:999999999:crashed-run",),
    )
    assert_balanced(run_pipeline(ws))
    assert silver(ws).height == 1


def test_quarantine_reads_and_counts(project_dir: Path) -> None:
    ws = open_project(project_dir)
    drop(project_dir, "2024-01-01.csv", [row(1, "2024-01-01", amount=-1), row(2, "2024-01-01", amount=-2, kind="q"), "x"])
    run_pipeline(ws)
    q = read_quarantine(ws)
    assert q.height == 4
    counts = {(r["rule"], r["column"]): (r["rows"], r["failures"]) for r in quarantine_counts(q).to_dicts()}
    assert counts == {("min", "amount"): (2, 2), ("allowed", "kind"): (1, 1), ("parse", ""): (1, 1)}
    one = q["_batch_id"][0]
    assert read_quarantine(ws, batch_id=one, rule="min").height == 2
    assert read_quarantine(ws, batch_id="nope").height == 0
    assert read_quarantine(ws, limit=1).height == 1


def test_pipeline_on_postgresql_metadata(project_dir: Path, pg_url: str) -> None:
    spec = (project_dir / "steward.yaml").read_text()
    (project_dir / "steward.yaml").write_text(spec.replace("project: test\n", f"project: test\nstorage:\n  metadata_url: {pg_url}\n"))
    ws = open_project(project_dir)
    assert ws.metadata.dialect == "postgresql"
    drop(project_dir, "2024-01-01.csv", [row(1, "2024-01-01"), row(1, "2024-01-01"), row(2, "2024-01-01", amount=-1), "bad"])
    rep = run_pipeline(ws)
    t = assert_balanced(rep)
    assert (t.rows_read, t.rows_silver, t.rows_quarantined, t.rows_duplicate) == (4, 1, 2, 1)
    assert get_run(ws.metadata, rep.run_id)["summary"]["totals"]["rows_read"] == 4
    b = ws.metadata.fetchone("SELECT status, rows_parse_failed FROM batches WHERE source = 'events'")
    assert b == {"status": "promoted", "rows_parse_failed": 1}
    assert run_pipeline(ws).batches == []
    ws.close()
