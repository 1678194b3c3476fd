"""Bad landing files are isolated (quarantined as a file), decoding is strict, parsing is chunked (Issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from pipeline_helpers import HEADER, assert_balanced, drop, open_project, row

from steward.data import _landing_read
from steward.data.ingest import ingest_source
from steward.data.pipeline import run_pipeline
from steward.spec import load_spec
from steward.workspace import Workspace


def _spec(project_dir: Path, **extra: str) -> Workspace:
    """Rewrite steward.yaml with sources ``events`` (with ``extra`` settings) and ``other``; open the project."""
    lines = "".join(f"    {k}: {v}\n" for k, v in extra.items())
    (project_dir / "steward.yaml").write_text(
        "project: test\nsources:\n"
        f"  events:\n    path: landing/events\n    contract: events\n{lines}"
        "  other:\n    path: landing/other\n    contract: events\n"
        "contracts:\n  events: contracts/events.yaml\n"
    )
    return open_project(project_dir)


def _file_records(ws: Workspace, source: str = "events") -> pl.DataFrame:
    return ws.lake.read(f"quarantine.{source}").filter(pl.col("rule") == "file")


def test_junk_file_over_the_row_cap_is_one_quarantine_record_and_the_rest_lands(project_dir: Path) -> None:
    ws = _spec(project_dir, max_bad_rows="5")
    drop(project_dir, "2024-01-01.csv", [row(1, "2024-01-01"), row(2, "2024-01-01")])
    drop(project_dir, "2024-01-02.csv", [f"junk {i} \x01 no fields" for i in range(50)])
    drop(project_dir, "2024-01-02.csv", [row(7, "2024-01-02")], source="other")
    rep = run_pipeline(ws)
    assert_balanced(rep)
    assert rep.by_source()["events"]["silver"] == 2 and rep.by_source()["other"]["silver"] == 1
    rec = _file_records(ws)
    assert rec.height == 1 and rec["_row"].to_list() == [-1]
    assert "more than 5 unreadable rows" in rec["reason"][0]
    counts = json.loads(rec["raw"][0])
    assert counts["file"] == "landing/events/2024-01-02.csv" and counts["rows_failed"] > 5 and len(counts["first_reasons"]) == 3
    # only the file record: none of its 50 junk lines is quarantined one by one, none is in bronze
    assert ws.lake.read("quarantine.events").height == 1
    assert set(ws.lake.read("bronze.events")["_source_file"]) == {"landing/events/2024-01-01.csv"}
    assert any("2024-01-02.csv quarantined as a whole" in w for w in rep.sources["events"].warnings)
    # idempotent: the rejected file is not read again, nothing is committed
    versions = rep.versions
    again = run_pipeline(ws)
    assert again.versions == versions and not again.batches
    assert [b.status for b in again.sources["events"].ingest.batches] == ["skipped", "skipped"]  # type: ignore[union-attr]


def test_failure_share_cap_after_the_minimum_sample(project_dir: Path) -> None:
    ws = _spec(project_dir, max_bad_share="0.2")
    lines = [row(i, "2024-01-01") if i % 2 else "x" for i in range(1, _landing_read.MIN_SAMPLE + 200)]
    drop(project_dir, "a.csv", lines)
    drop(project_dir, "b.csv", [row(1, "2024-01-01"), "only one bad line"])  # 50% bad but far below the sample: lands
    rep = ingest_source(ws, "events")
    (bad,) = rep.rejected
    assert bad.origin.endswith("a.csv") and "more than 20% of rows unreadable" in (bad.reason or "")
    assert [b.rows_bronze for b in rep.new_batches] == [1]


def test_empty_file_does_not_block_the_run_or_other_sources(project_dir: Path) -> None:
    ws = _spec(project_dir)
    drop(project_dir, "2024-01-01.csv", [row(1, "2024-01-01")])
    (project_dir / "landing" / "events" / "2024-01-02.csv").write_bytes(b"")
    drop(project_dir, "x.csv", [row(5, "2024-01-01")], source="other")
    rep = run_pipeline(ws)
    assert rep.by_source()["events"]["silver"] == 1 and rep.by_source()["other"]["silver"] == 1
    assert "the file is empty (0 bytes)" in _file_records(ws)["reason"][0]
    row_ = ws.metadata.fetchone("SELECT status FROM batches WHERE origin = ?", ("landing/events/2024-01-02.csv",))
    assert row_ == {"status": "rejected"}
    run = ws.metadata.fetchone("SELECT status FROM pipeline_runs WHERE run_id = ?", (rep.run_id,))
    assert run == {"status": "succeeded"}


def _utf16(project_dir: Path) -> Path:
    body = "\n".join([HEADER, row(1, "2024-01-01"), row(2, "2024-01-01", kind="b")]) + "\n"
    p = project_dir / "landing" / "events" / "2024-01-01.csv"
    p.write_bytes(body.encode("utf-16"))
    return p


def test_utf16_without_declared_encoding_is_quarantined_with_a_hint_then_lands_once_declared(project_dir: Path) -> None:
    ws = _spec(project_dir)
    _utf16(project_dir)
    drop(project_dir, "o.csv", [row(9, "2024-01-01")], source="other")
    rep = run_pipeline(ws)
    (bad,) = rep.sources["events"].ingest.rejected  # type: ignore[union-attr]
    assert "UTF-16" in (bad.reason or "") and "encoding: utf-16" in (bad.reason or "")
    assert rep.by_source()["other"]["silver"] == 1
    ws = _spec(project_dir, encoding="utf-16")
    rep = run_pipeline(ws)  # the reading settings changed: the rejected file is read again
    assert rep.by_source()["events"]["silver"] == 2
    assert ws.lake.read("silver.events").sort("id")["kind"].to_list() == ["a", "b"]


def test_binary_file_is_quarantined_as_a_file(project_dir: Path) -> None:
    ws = _spec(project_dir)
    (project_dir / "landing" / "events" / "blob.csv").write_bytes(b"id,ts\n\x00\x01\x02\xff" * 100)
    rep = ingest_source(ws, "events")
    assert "binary file: NUL byte at byte 6" in (rep.rejected[0].reason or "")


def _latin1(project_dir: Path) -> None:
    p = project_dir / "landing" / "events" / "2024-01-01.csv"
    p.write_bytes(f"{HEADER}\n{row(1, '2024-01-01')}\n2,2024-01-01T10:00:00Z,1.0,Soci\xe9t\xe9\n".encode("latin-1"))


def test_latin1_bytes_are_quarantined_under_utf8_never_replaced(project_dir: Path) -> None:
    ws = _spec(project_dir)
    _latin1(project_dir)
    rep = run_pipeline(ws)
    assert_balanced(rep)
    q = ws.lake.read("quarantine.events").filter(pl.col("rule") == "parse")
    offset = len(f"{HEADER}\n{row(1, '2024-01-01')}\n2,2024-01-01T10:00:00Z,1.0,Soci")
    assert q["reason"].to_list() == [f"line 3: not valid utf-8 at byte {offset}"]
    assert q["raw"][0].endswith("Soci\\xe9t\\xe9")  # the bytes stay visible
    bronze = ws.lake.read("bronze.events")
    assert bronze["id"].to_list() == ["1"]
    assert not any("\ufffd" in str(v) for v in bronze.to_dicts() for v in v.values())


def test_latin1_declared_lands_decoded(project_dir: Path) -> None:
    contract = (Path(__file__).parent / "pipeline_helpers.py").read_text().split('CONTRACT = """\\\n')[1].split('"""')[0]
    ws = _spec(project_dir, encoding="latin-1")
    (project_dir / "contracts" / "events.yaml").write_text(contract.replace("allowed: [a, b]", "allowed: [a, Société]"))
    ws = Workspace(load_spec(project_dir))
    _latin1(project_dir)
    rep = run_pipeline(ws)
    assert rep.by_source()["events"]["silver"] == 2
    assert ws.lake.read("silver.events").sort("id")["kind"].to_list() == ["a", "Société"]


def test_unknown_encoding_is_a_spec_error(project_dir: Path) -> None:
    from steward.errors import SpecError

    with pytest.raises(SpecError, match="encoding"):
        _spec(project_dir, encoding="klingon-8")


def test_chunked_parsing_equals_whole_file_parsing(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [row(i, "2024-01-01", amount=f'"{i},5"' if i % 7 == 0 else 1.0) for i in range(1, 60)]
    lines[10] = '11,2024-01-01T10:00:00Z,"multi'
    lines.insert(11, 'line",a')  # a quoted record over two lines, likely across a block edge
    lines[30] = "bad,line"
    ws = _spec(project_dir)
    drop(project_dir, "a.csv", lines)
    whole = ingest_source(ws, "events")
    ref = ws.lake.read("bronze.events").drop("_ingested_at").sort("_row")
    ref_q = ws.lake.read("quarantine.events").select("_row", "reason", "raw").sort("_row")
    # again in a fresh project with 50-byte blocks: every record crosses or meets a block edge
    other = project_dir / "again"
    (other / "contracts").mkdir(parents=True)
    (other / "contracts" / "events.yaml").write_text((project_dir / "contracts" / "events.yaml").read_text())
    (other / "steward.yaml").write_text((project_dir / "steward.yaml").read_text())
    (other / "landing" / "events").mkdir(parents=True)
    (other / "landing" / "events" / "a.csv").write_bytes((project_dir / "landing" / "events" / "a.csv").read_bytes())
    monkeypatch.setattr(_landing_read, "BLOCK_BYTES", 50)
    ws2 = Workspace(load_spec(other))
    small = ingest_source(ws2, "events")
    assert (small.batches[0].rows_bronze, small.batches[0].rows_parse_failed) == (whole.batches[0].rows_bronze, 1)
    assert ws2.lake.read("bronze.events").drop("_ingested_at").sort("_row").equals(ref)
    assert ws2.lake.read("quarantine.events").select("_row", "reason", "raw").sort("_row").equals(ref_q)


def test_a_reader_panic_quarantines_the_file_not_the_run(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Panic(BaseException):  # pyo3's PanicException derives from BaseException too
        pass

    real = _landing_read.CsvParser.feed

    def feed(self: _landing_read.CsvParser, lines: list[str], bad: dict[int, str], *, final: bool) -> _landing_read.Chunk:
        if any("boom" in ln for ln in lines):
            raise Panic("called `Result::unwrap()` on an `Err` value: NulError")
        return real(self, lines, bad, final=final)

    monkeypatch.setattr(_landing_read.CsvParser, "feed", feed)
    ws = _spec(project_dir)
    drop(project_dir, "a.csv", [row(1, "2024-01-01")])
    drop(project_dir, "b.csv", ["boom"])
    rep = run_pipeline(ws)
    assert rep.by_source()["events"]["silver"] == 1
    assert "the reader failed: Panic" in _file_records(ws)["reason"][0]


def test_quarantine_reads_only_what_the_limit_needs(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from steward.data.quarantine import quarantine_summary, read_quarantine

    ws = _spec(project_dir)
    drop(project_dir, "a.csv", [row(1, "2024-01-01")] + [f"bad line {i}" for i in range(400)])
    drop(project_dir, "b.csv", [row(2, "2024-01-01", amount=-1) for _ in range(1)])
    run_pipeline(ws)
    collected: list[int] = []
    real = pl.LazyFrame.collect

    def spy(self: pl.LazyFrame, *args: object, **kwargs: object) -> pl.DataFrame:
        out = real(self, *args, **kwargs)  # type: ignore[arg-type]
        collected.append(out.height)
        return out

    monkeypatch.setattr(pl.LazyFrame, "collect", spy)
    shown = read_quarantine(ws, limit=3)
    assert shown.height == 3 and max(collected) == 3  # the 401 quarantined rows never reach memory at once
    collected.clear()
    failures, rows, counts = quarantine_summary(ws)
    assert (failures, rows) == (401, 401) and max(collected) <= 2
    assert dict(zip(counts["rule"], counts["failures"], strict=True)) == {"parse": 400, "min": 1}


def test_contract_gate_in_small_chunks_gives_the_same_silver_and_accounting(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from steward.data import pipeline

    def land(d: Path) -> None:
        drop(
            d,
            "2024-01-02.csv",
            [row(1, "2024-01-02"), row(2, "2024-01-02", amount=-1), row(3, "2024-01-02"), row(3, "2024-01-02", amount=9)],
        )
        drop(d, "2024-01-03.csv", [row(1, "2024-01-03"), row(4, "2024-01-01"), row(5, "2024-01-03", kind="z"), row(6, "2024-01-03")])

    def outcome(ws: Workspace) -> tuple[object, ...]:
        rep = run_pipeline(ws)
        acc = sorted((b.origin, b.rows_read, b.rows_silver, b.rows_quarantined, b.rows_duplicate, b.rows_late) for b in rep.batches)
        return acc, ws.lake.read("silver.events").select("id", "amount", "_date").sort("id").rows()

    ws = _spec(project_dir)
    land(project_dir)
    whole = outcome(ws)
    other = project_dir / "again"
    (other / "contracts").mkdir(parents=True)
    (other / "contracts" / "events.yaml").write_text((project_dir / "contracts" / "events.yaml").read_text())
    (other / "steward.yaml").write_text((project_dir / "steward.yaml").read_text())
    land(other)
    monkeypatch.setattr(pipeline, "PROMOTE_CHUNK_ROWS", 1)  # the key 3 duplicate sits in another chunk than its first
    assert outcome(Workspace(load_spec(other))) == whole
    assert whole[0][0][4] == 1  # the in-batch duplicate was found
