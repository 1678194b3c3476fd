from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from pipeline_helpers import drop, open_project, row

from steward.data.ingest import batch_id_for, file_date, ingest_source, landing_files, parse_file
from steward.errors import IngestError, SpecError
from steward.spec import load_spec


def test_csv_lands_raw_with_metadata_and_malformed_lines_are_quarantined(project_dir: Path) -> None:
    ws = open_project(project_dir)
    path = drop(
        project_dir,
        "2024-01-02.csv",
        [
            row(1, "2024-01-02"),
            "2,2024-01-02T10:00:00Z,1.0",  # line 3: too few fields
            row(3, "2024-01-02", amount="NA"),
            '4,2024-01-02T10:00:00Z,"1.0,b',  # line 5: broken quoting
            row(5, "2024-01-02", amount='"2,5"'),  # quoted delimiter: a good line
            '6,2024-01-02T10:00:00Z,"multi',  # a quoted field spanning two lines is one record
            'line",a',
            "7,2024-01-02T10:00:00Z,1,a,extra",  # line 9: too many fields
        ],
    )
    rep = ingest_source(ws, "events")
    assert len(rep.batches) == 1
    b = rep.batches[0]
    assert b.batch_id == "events-" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert (b.status, b.rows_read, b.rows_bronze, b.rows_parse_failed) == ("new", 7, 4, 3)

    bronze = ws.lake.read("bronze.events").sort("_row")
    assert bronze["id"].to_list() == ["1", "3", "5", "6"]
    assert bronze["amount"].to_list() == ["1.0", None, "2,5", "multi\nline"]  # raw text, null markers -> null
    assert bronze.schema["_row"] == pl.Int64 and bronze.schema["_ingested_at"] == pl.Datetime("us", "UTC")
    assert bronze["_row"].to_list() == [1, 3, 5, 6]  # 1-based data line numbers
    assert set(bronze["_source_file"]) == {"landing/events/2024-01-02.csv"}
    assert set(bronze["_batch_id"]) == {b.batch_id}

    q = ws.lake.read("quarantine.events").sort("_row")
    assert q["_row"].to_list() == [2, 4, 8]
    assert set(q["rule"]) == {"parse"}
    assert q["raw"].to_list() == ["2,2024-01-02T10:00:00Z,1.0", '4,2024-01-02T10:00:00Z,"1.0,b', "7,2024-01-02T10:00:00Z,1,a,extra"]
    assert "line 3" in q["reason"][0] and "expected 4 fields, found 3" in q["reason"][0]
    assert "line 5" in q["reason"][1] and "quot" in q["reason"][1]
    assert set(q["contract_version"]) == {"1.0"}
    assert q.schema["_quarantined_at"] == pl.Datetime("us", "UTC")


def test_reingesting_the_same_file_changes_nothing(project_dir: Path) -> None:
    ws = open_project(project_dir)
    drop(project_dir, "2024-01-02.csv", [row(1, "2024-01-02"), "bad,line"])
    first = ingest_source(ws, "events")
    versions = (ws.lake.version("bronze.events"), ws.lake.version("quarantine.events"))
    history = (len(ws.lake.history("bronze.events")), len(ws.lake.history("quarantine.events")))
    again = ingest_source(ws, "events")
    assert [b.status for b in again.batches] == ["skipped"]
    assert again.batches[0].batch_id == first.batches[0].batch_id
    assert (ws.lake.version("bronze.events"), ws.lake.version("quarantine.events")) == versions
    assert (len(ws.lake.history("bronze.events")), len(ws.lake.history("quarantine.events"))) == history
    # the same bytes under another name are the same batch: still nothing new
    (project_dir / "landing" / "events" / "copy.csv").write_bytes((project_dir / "landing" / "events" / "2024-01-02.csv").read_bytes())
    third = ingest_source(ws, "events")
    assert {b.status for b in third.batches} == {"skipped"}
    assert ws.lake.version("bronze.events") == versions[0]
    assert ws.lake.read("bronze.events").height == 1


def test_one_bronze_commit_per_ingest_and_batches_recorded(project_dir: Path) -> None:
    ws = open_project(project_dir)
    drop(project_dir, "2024-01-01.csv", [row(1, "2024-01-01")])
    drop(project_dir, "2024-01-02.csv", [row(2, "2024-01-02"), row(3, "2024-01-02")])
    rep = ingest_source(ws, "events")
    assert rep.bronze_version == 0 and len(ws.lake.history("bronze.events")) == 1
    rows = ws.metadata.fetchall(
        "SELECT batch_id, status, rows_read, rows_bronze, origin FROM batches WHERE source = 'events' ORDER BY origin"
    )
    assert [(r["status"], r["rows_read"], r["rows_bronze"]) for r in rows] == [("landed", 1, 1), ("landed", 2, 2)]
    run = ws.metadata.fetchone("SELECT kind, status FROM pipeline_runs WHERE run_id = ?", (rep.run_id,))
    assert run == {"kind": "ingest", "status": "succeeded"}
    assert ws.lake.history("bronze.events")[0]["run_id"] == rep.run_id


def test_jsonl_values_land_as_text_and_bad_lines_are_quarantined(tmp_path: Path) -> None:
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "e.yaml").write_text("name: e\nversion: 1\ncolumns:\n  id: {type: int64}\n  ok: {type: bool}\n")
    (tmp_path / "steward.yaml").write_text(
        "project: t\nsources:\n  e:\n    path: in\n    format: jsonl\n    contract: e\ncontracts:\n  e: contracts/e.yaml\n"
    )
    (tmp_path / "in").mkdir()
    lines = [json.dumps({"id": 1, "ok": True, "extra": {"a": 1}}), "{not json", json.dumps([1, 2]), "", json.dumps({"id": "2", "ok": None})]
    (tmp_path / "in" / "x.jsonl").write_text("\n".join(lines) + "\n")
    from steward.workspace import Workspace

    ws = Workspace(load_spec(tmp_path))
    rep = ingest_source(ws, "e")
    assert (rep.batches[0].rows_read, rep.batches[0].rows_bronze, rep.batches[0].rows_parse_failed) == (4, 2, 2)
    b = ws.lake.read("bronze.e").sort("_row")
    assert b.schema["id"] == pl.String and b["id"].to_list() == ["1", "2"]
    assert b["ok"].to_list() == ["true", None]
    assert b["extra"].to_list() == ['{"a": 1}', None]
    assert b["_row"].to_list() == [1, 5]
    q = ws.lake.read("quarantine.e").sort("_row")
    assert q["_row"].to_list() == [2, 3]
    assert q["raw"].to_list() == ["{not json", "[1, 2]"]


def test_parquet_lands_typed_with_row_index(tmp_path: Path) -> None:
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "p.yaml").write_text("name: p\nversion: 1\ncolumns:\n  id: {type: int64}\n  v: {type: float64}\n")
    (tmp_path / "steward.yaml").write_text(
        "project: t\nsources:\n  p:\n    path: in\n    format: parquet\n    pattern: '*.parquet'\n    contract: p\ncontracts:\n  p: contracts/p.yaml\n"
    )
    (tmp_path / "in").mkdir()
    pl.DataFrame({"id": [10, 20, 30], "v": [0.5, None, 2.0]}).write_parquet(tmp_path / "in" / "a.parquet")
    (tmp_path / "in" / "notes.txt").write_text("ignored: does not match the pattern")
    from steward.workspace import Workspace

    ws = Workspace(load_spec(tmp_path))
    rep = ingest_source(ws, "p")
    assert len(rep.batches) == 1 and rep.batches[0].rows_bronze == 3
    b = ws.lake.read("bronze.p").sort("_row")
    assert b.schema["id"] == pl.Int64 and b.schema["v"] == pl.Float64
    assert b["_row"].to_list() == [0, 1, 2]
    (tmp_path / "in" / "broken.parquet").write_bytes(b"PAR1 not really")
    # a corrupt file no longer stops the source: it is quarantined as one file-level record
    again = ingest_source(ws, "p")
    (bad,) = again.rejected
    assert bad.origin == "in/broken.parquet" and "not a readable Parquet file" in (bad.reason or "")
    q = ws.lake.read("quarantine.p")
    assert q.filter(pl.col("rule") == "file")["_batch_id"].to_list() == [bad.batch_id]
    assert ws.lake.read("bronze.p").height == 3
    with pytest.raises(IngestError, match=r"broken\.parquet"):
        parse_file(tmp_path / "in" / "broken.parquet", "p", ws.spec.source("p"), origin="x", ingested_at=datetime.now(UTC))


def test_csv_without_header_uses_contract_column_order(tmp_path: Path) -> None:
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "e.yaml").write_text("name: e\nversion: 1\ncolumns:\n  a: {type: int64}\n  b: {type: string}\n")
    (tmp_path / "steward.yaml").write_text(
        "project: t\nsources:\n  e:\n    path: in\n    contract: e\n    csv: {header: false, delimiter: ';'}\ncontracts:\n  e: contracts/e.yaml\n"
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.csv").write_text("1;x\n2;y;z\n3;\n")
    from steward.workspace import Workspace

    ws = Workspace(load_spec(tmp_path))
    rep = ingest_source(ws, "e")
    b = ws.lake.read("bronze.e").sort("_row")
    assert b["a"].to_list() == ["1", "3"] and b["b"].to_list() == ["x", None]
    assert b["_row"].to_list() == [1, 3]  # without a header, row numbers are file line numbers
    assert rep.batches[0].rows_parse_failed == 1


def test_landing_files_date_filter_and_file_date(project_dir: Path) -> None:
    ws = open_project(project_dir)
    for name in ("2024-01-01.csv", "2024-01-05.csv", "events_2024-02-01.csv", "reference.csv"):
        drop(project_dir, name, [row(1, "2024-01-01")])
    names = [p.name for p in landing_files(ws, "events", date_from=date(2024, 1, 2), date_to=date(2024, 1, 31))]
    assert names == ["2024-01-05.csv", "reference.csv"]
    assert file_date(Path("x/events_2013-01-05.csv")) == date(2013, 1, 5)
    assert file_date(Path("2013-13-45.csv")) is None
    assert len(landing_files(ws, "events")) == 4


def test_batch_id_and_parse_file_are_deterministic(project_dir: Path) -> None:
    ws = open_project(project_dir)
    p = drop(project_dir, "a.csv", [row(1, "2024-01-01")])
    assert batch_id_for("events", p.read_bytes()) == "events-" + hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    at = datetime(2024, 1, 1, tzinfo=UTC)
    one = parse_file(p, "events", ws.spec.source("events"), origin="a.csv", ingested_at=at)
    two = parse_file(p, "events", ws.spec.source("events"), origin="a.csv", ingested_at=at)
    assert one.batch_id == two.batch_id and one.rows.equals(two.rows)


def test_unknown_source_is_a_spec_error(project_dir: Path) -> None:
    ws = open_project(project_dir)
    with pytest.raises(SpecError, match="nope"):
        ingest_source(ws, "nope")
