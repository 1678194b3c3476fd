from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from steward.backends.sql_metadata import open_metadata_store
from steward.data.lake import Lake, TableRef, with_retries
from steward.errors import DataError, TableNotFound, VersionNotFound


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"), open_metadata_store(f"sqlite:///{tmp_path / 'm.db'}"))


def test_table_ref_parsing() -> None:
    assert TableRef.parse("silver.flights@12") == TableRef("silver", "flights", 12)
    assert str(TableRef.parse("gold.f")) == "gold.f"
    assert TableRef.parse("flights", default_layer="bronze").table == "bronze.flights"
    for bad in ("nolayer", "platinum.x", "silver.flights@v2", "silver.@1"):
        with pytest.raises(DataError):
            TableRef.parse(bad)


def test_every_write_is_one_version_with_history(lake: Lake) -> None:
    v0 = lake.write("silver.t", pl.DataFrame({"k": [1, 2], "d": ["a", "b"]}), partition_by=["d"], run_id="r1", batch_id="b1")
    v1 = lake.write("silver.t", pl.DataFrame({"k": [3], "d": ["c"]}), run_id="r2", batch_id="b2")
    assert (v0, v1) == (0, 1)
    hist = lake.history("silver.t")
    assert [h["version"] for h in hist] == [1, 0]
    assert hist[0]["rows_written"] == 1 and hist[0]["total_rows"] == 3 and hist[0]["run_id"] == "r2"
    assert hist[1]["rows_written"] == 2 and hist[1]["total_rows"] == 2 and hist[1]["batch_id"] == "b1"
    assert lake.read("silver.t@0").height == 2
    assert lake.read("silver.t").height == 3
    assert lake.pin("silver.t") == TableRef("silver", "t", 1)


def test_merge_insert_is_idempotent(lake: Lake) -> None:
    df = pl.DataFrame({"k": [1, 2, 3], "v": ["x", "y", "z"]})
    assert lake.merge_insert("silver.m", df, keys=["k"]) == (0, 3)
    assert lake.merge_insert("silver.m", df, keys=["k"]) == (0, 0)  # no new commit
    v, n = lake.merge_insert("silver.m", pl.DataFrame({"k": [3, 4], "v": ["z", "w"]}), keys=["k"])
    assert (v, n) == (1, 1)
    assert sorted(lake.read("silver.m")["k"].to_list()) == [1, 2, 3, 4]


def test_missing_table_and_version(lake: Lake) -> None:
    with pytest.raises(TableNotFound):
        lake.read("silver.none")
    lake.write("silver.t", pl.DataFrame({"k": [1]}))
    with pytest.raises(VersionNotFound, match="latest is 0"):
        lake.read("silver.t@5")
    assert lake.tables("silver") == [TableRef("silver", "t")]


def test_retries_transient_io_then_gives_up() -> None:
    calls = {"n": 0}

    def flaky() -> int:
        calls["n"] += 1
        if calls["n"] < 3:
            raise OSError("transient")
        return 7

    assert with_retries(flaky, base_delay=0.001) == 7
    assert calls["n"] == 3

    def broken() -> int:
        raise OSError("disk gone")

    with pytest.raises(DataError, match="after 2 attempts"):
        with_retries(broken, attempts=2, base_delay=0.001)
