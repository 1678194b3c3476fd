"""Contracts: loading (clear errors), casting raw text, every rule failing and passing, accounting."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
import yaml

from steward.data.contracts import (
    FAILURE_SCHEMA,
    CheckResult,
    Contract,
    check_contract,
    load_contract,
    parse_contract,
    read_raw_file,
)
from steward.errors import ContractError, IngestError

EXAMPLE = Path(__file__).resolve().parents[2] / "src/steward/examples/flights/contracts"

BASE: dict[str, Any] = {
    "name": "trips",
    "version": "1.0.0",
    "key": ["id"],
    "event_time": "ts",
    "columns": {
        "id": {"type": "int64"},
        "ts": {"type": "datetime"},
        "n": {"type": "int32", "min": 0, "max": 100},
        "x": {"type": "float64", "nullable": False, "min": -1.5, "max": 1.5},
        "code": {"type": "string", "regex": "^[A-Z]{2}$"},
        "origin": {"type": "string", "allowed": ["EWR", "JFK", "LGA"]},
        "flag": {"type": "bool"},
        "day": {"type": "date", "min": "2013-01-01"},
        "serial": {"type": "string", "unique": True},
    },
    "rules": [{"name": "x_below_n", "expr": "x < n", "description": "x is always below n"}],
}


def make(**overrides: Any) -> Contract:
    data = {**BASE, **overrides}
    return parse_contract(data, Path("trips.yaml"))


def good_rows(n: int = 3) -> pl.DataFrame:
    """Raw text rows, as read from a CSV, that pass every rule."""
    return pl.DataFrame(
        {
            "id": [str(i) for i in range(n)],
            "ts": [f"2013-01-0{1 + i % 9}T10:00:00Z" for i in range(n)],
            "n": [str(10 + i) for i in range(n)],
            "x": ["0.5"] * n,
            "code": ["AB"] * n,
            "origin": ["JFK"] * n,
            "flag": ["true"] * n,
            "day": ["2013-02-01"] * n,
            "serial": [f"s{i}" for i in range(n)],
        }
    )


def with_value(df: pl.DataFrame, column: str, row: int, value: str | None) -> pl.DataFrame:
    values = df[column].to_list()
    values[row] = value
    return df.with_columns(pl.Series(column, values, dtype=pl.String))


def rules_of(res: CheckResult) -> list[tuple[int, str, str | None]]:
    return sorted((r["_row"], r["rule"], r["column"]) for r in res.failures.iter_rows(named=True))


# -- loading ---------------------------------------------------------------------
def test_example_contracts_load() -> None:
    names = {}
    for f in sorted(EXAMPLE.glob("*.yaml")):
        c = load_contract(f)
        names[c.name] = c
    assert set(names) == {"flights", "weather", "planes", "airlines", "airports"}
    flights = names["flights"]
    assert flights.key == ["year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"]
    assert flights.event_time == "time_hour"
    assert {"arr_delay", "dep_time", "arr_time", "air_time"} <= flights.not_nullable()
    assert flights.columns["origin"].allowed == ["EWR", "JFK", "LGA"]


def test_version_may_be_a_number_and_types_have_aliases() -> None:
    c = make(version=3, rules=[], columns={"id": {"type": "integer"}, "ts": {"type": "timestamp"}})
    assert c.version == "3"
    assert c.columns["id"].type == "int64"
    assert c.columns["ts"].type == "datetime"


def test_schemas_follow_contract_order_and_types() -> None:
    c = make()
    schema = c.polars_schema()
    assert list(schema) == list(BASE["columns"])
    assert schema["ts"] == pl.Datetime("us", "UTC")
    assert schema["n"] == pl.Int32
    arrow = c.arrow_schema()
    assert arrow.field("ts").type == pa.timestamp("us", tz="UTC")
    assert arrow.field("id").nullable is False  # key columns are never nullable
    assert arrow.field("x").nullable is False
    assert arrow.field("code").nullable is True


@pytest.mark.parametrize(
    ("mutate", "key_named"),
    [
        (lambda d: d["columns"]["x"].update(nulable=False), "columns.x.nulable"),
        (lambda d: d["columns"]["x"].update(type="decimal"), "columns.x.type"),
        (lambda d: d.update(key=["idd"]), "key.0"),
        (lambda d: d.update(event_time="n"), "event_time"),
        (lambda d: d["rules"].append({"name": "bad", "expr": "nope > 1"}), "rules.1.expr"),
        (lambda d: d["rules"].append({"name": "bad", "expr": "x <<< 1"}), "rules.1.expr"),
        (lambda d: d["columns"]["code"].update(regex="(?<=a)b"), "columns.code.regex"),
        (lambda d: d["columns"]["n"].update(min="zero"), "columns.n"),
        (lambda d: d["columns"]["n"].update(min=50, max=10), "columns.n"),
        (lambda d: d["columns"]["origin"].update(min=1), "columns.origin"),
        (lambda d: d.pop("version"), "version"),
        (lambda d: d.update(freshness={"column": "ts", "max_age": "soon"}), "freshness.max_age"),
    ],
)
def test_bad_contract_file_names_file_and_key(tmp_path: Path, mutate: Any, key_named: str) -> None:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    mutate(data)
    path = tmp_path / "trips.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ContractError) as info:
        load_contract(path)
    msg = str(info.value)
    assert str(path) in msg
    assert f"'{key_named}" in msg
    assert info.value.hint
    assert info.value.exit_code == 2


def test_unknown_key_suggests_the_fix(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["columns"]["x"]["nulable"] = False
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ContractError, match="did you mean 'nullable'"):
        load_contract(path)


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ContractError, match="not valid YAML at line"):
        load_contract(bad)
    with pytest.raises(ContractError, match="no such contract file"):
        load_contract(tmp_path / "absent.yaml")
    with pytest.raises(ContractError, match="must be a mapping"):
        parse_contract(["a"], Path("list.yaml"))


# -- casting and every rule ------------------------------------------------------
def test_good_raw_rows_pass_and_are_cast() -> None:
    c = make()
    res = check_contract(good_rows(), c)
    assert res.failures.is_empty()
    assert res.rows_in == res.rows_valid == 3
    assert res.rows_failed == 0
    assert res.failures.schema == pl.Schema(FAILURE_SCHEMA)
    assert list(res.valid.columns) == [*BASE["columns"], "_row"]
    assert res.valid.schema["ts"] == pl.Datetime("us", "UTC")
    assert res.valid.schema["n"] == pl.Int32
    assert res.valid["ts"][0] == datetime(2013, 1, 1, 10, tzinfo=UTC)
    assert res.valid["flag"].to_list() == [True, True, True]
    assert res.contract_version == "1.0.0"


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("n", "12x", "type"),
        ("n", "3000000000", "type"),  # does not fit int32
        ("x", "abc", "type"),
        ("ts", "yesterday", "type"),
        ("flag", "maybe", "type"),
        ("day", "2013-13-45", "type"),
        ("x", None, "not_null"),
        ("x", "  ", "not_null"),  # blank text is null
        ("id", None, "not_null"),  # key columns are implicitly not nullable
        ("ts", None, "not_null"),  # so is the event time
        ("n", "-1", "min"),
        ("x", "-2", "min"),
        ("day", "2012-12-31", "min"),
        ("n", "101", "max"),
        ("origin", "BOS", "allowed"),
        ("code", "abc", "regex"),
    ],
)
def test_each_rule_fails_with_value_and_reason(column: str, value: str | None, rule: str) -> None:
    c = make(rules=[])
    df = with_value(good_rows(), column, 1, value)
    res = check_contract(df, c)
    assert rules_of(res) == [(1, rule, column)]
    assert res.rows_failed == 1
    assert res.rows_valid == 2
    assert 1 not in res.valid["_row"].to_list()
    row = res.failures.row(0, named=True)
    assert column in row["reason"]
    if rule in ("type", "min", "max", "allowed", "regex"):
        assert row["value"] == value
    else:
        assert row["value"] is None


def test_ints_written_as_floats_parse_but_fractions_do_not() -> None:
    c = make(rules=[])
    df = with_value(with_value(good_rows(), "n", 0, "17.0"), "n", 2, "17.5")
    res = check_contract(df, c)
    assert rules_of(res) == [(2, "type", "n")]
    assert res.valid.filter(pl.col("_row") == 0)["n"].item() == 17


def test_datetime_text_forms() -> None:
    c = make(rules=[])
    forms = ["2013-01-01T10:00:00Z", "2013-01-01T11:00:00+01:00", "2013-01-01 10:00:00", "2013-01-01T10:00:00.000"]
    df = pl.concat([good_rows(1)] * len(forms)).with_columns(
        pl.Series("ts", forms),
        pl.Series("id", [str(i) for i in range(len(forms))]),
        pl.Series("serial", [f"s{i}" for i in range(len(forms))]),
    )
    res = check_contract(df, c)
    assert res.failures.is_empty()
    assert set(res.valid["ts"].to_list()) == {datetime(2013, 1, 1, 10, tzinfo=UTC)}


def test_unique_column_flags_every_duplicate_but_not_nulls() -> None:
    c = make(rules=[])
    df = good_rows(4).with_columns(pl.Series("serial", ["a", "a", None, None]))
    res = check_contract(df, c)
    assert rules_of(res) == [(0, "unique", "serial"), (1, "unique", "serial")]


def test_key_duplicates_are_not_failures() -> None:
    c = make(rules=[])
    df = good_rows(3).with_columns(pl.lit("7").alias("id"))
    res = check_contract(df, c)
    assert res.failures.is_empty()
    assert res.rows_valid == 3


def test_cross_column_rule_fails_and_null_result_passes() -> None:
    c = make()
    df = with_value(with_value(good_rows(3), "x", 0, "1.4"), "n", 0, "1")  # 1.4 < 1 is false
    df = with_value(df, "n", 2, None)  # x < null is null: passes (SQL CHECK semantics)
    res = check_contract(df, c)
    assert rules_of(res) == [(0, "rule:x_below_n", None)]
    assert "x is always below n" in res.failures["reason"][0]
    assert res.rows_valid == 2


def test_rule_reads_cast_values_and_skips_type_failures() -> None:
    c = make()
    df = with_value(good_rows(2), "n", 0, "zz")  # type failure only: the rule sees null and passes
    res = check_contract(df, c)
    assert rules_of(res) == [(0, "type", "n")]


def test_two_rules_on_one_row_give_two_failures_but_count_once() -> None:
    c = make(rules=[])
    df = with_value(with_value(good_rows(3), "n", 0, "500"), "origin", 0, "BOS")
    res = check_contract(df, c)
    assert rules_of(res) == [(0, "allowed", "origin"), (0, "max", "n")]
    assert res.failures.height == 2
    assert res.rows_failed == 1
    assert res.rows_in == res.rows_valid + res.rows_failed


def test_typed_input_passes_through_and_fails_the_same_way() -> None:
    c = make(rules=[])
    typed = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "ts": [datetime(2013, 1, 1, 10), datetime(2013, 1, 2), datetime(2013, 1, 3)],  # naive: read as UTC
            "n": [1, 2, 300],
            "x": [0.1, 2.0, None],
            "code": ["AB", "CD", "EF"],
            "origin": ["EWR", "JFK", "LGA"],
            "flag": [True, False, None],
            "day": [datetime(2013, 5, 1).date()] * 3,
            "serial": ["a", "b", "c"],
        }
    )
    res = check_contract(typed, c)
    assert rules_of(res) == [(1, "max", "x"), (2, "max", "n"), (2, "not_null", "x")]
    assert res.valid.schema == pl.Schema({**c.polars_schema(), "_row": pl.Int64})
    assert res.valid["ts"][0] == datetime(2013, 1, 1, 10, tzinfo=UTC)


def test_float_column_into_int_contract_checks_wholeness() -> None:
    c = make(rules=[])
    typed = good_rows(3).with_columns(pl.Series("n", [1.0, 2.5, None]))
    res = check_contract(typed, c)
    assert rules_of(res) == [(1, "type", "n")]
    assert res.valid["n"].to_list() == [1, None]


def test_missing_column_fails_every_row_and_extra_columns_are_dropped() -> None:
    c = make(rules=[])
    df = good_rows(3).drop("origin").with_columns(pl.lit("x").alias("surprise"), pl.lit("b1").alias("_batch_id"))
    res = check_contract(df, c)
    assert rules_of(res) == [(i, "missing_column", "origin") for i in range(3)]
    assert res.rows_valid == 0 and res.rows_failed == 3
    assert any("surprise" in w for w in res.warnings)
    assert any("origin" in w for w in res.warnings)


def test_metadata_columns_pass_through_and_extras_warn() -> None:
    c = make(rules=[])
    at = datetime(2024, 1, 1, tzinfo=UTC)
    df = good_rows(2).with_columns(
        pl.lit("batch-1").alias("_batch_id"),
        pl.lit(at).alias("_ingested_at"),
        pl.lit("a.csv").alias("_source_file"),
        pl.lit(1).alias("extra"),
    )
    df = df.with_row_index("_row").with_columns((pl.col("_row").cast(pl.Int64) + 100).alias("_row"))
    res = check_contract(df, c)
    assert res.valid["_row"].to_list() == [100, 101]
    assert res.valid.columns[-4:] == ["_row", "_batch_id", "_ingested_at", "_source_file"] or set(res.valid.columns[-4:]) == {
        "_row",
        "_batch_id",
        "_ingested_at",
        "_source_file",
    }
    assert res.valid["_ingested_at"][0] == at
    assert "extra" not in res.valid.columns
    assert any("extra" in w for w in res.warnings)


def test_failures_carry_the_callers_row_ids() -> None:
    c = make(rules=[])
    df = with_value(good_rows(3), "n", 2, "-5").with_columns(pl.Series("_row", [10, 20, 30], dtype=pl.Int64))
    res = check_contract(df, c)
    assert res.failures["_row"].to_list() == [30]


def test_freshness_is_a_warning_not_a_failure() -> None:
    c = make(rules=[], freshness={"column": "ts", "max_age": "36h"})
    df = good_rows(3)  # newest ts 2013-01-03T10:00Z
    fresh = check_contract(df, c, now=datetime(2013, 1, 4, 12, tzinfo=UTC))
    assert not any("freshness" in w for w in fresh.warnings)
    stale = check_contract(df, c, now=datetime(2013, 1, 10, tzinfo=UTC))
    assert any("freshness" in w and "36h" in w for w in stale.warnings)
    assert stale.rows_failed == 0


def test_top_reasons_counts_by_rule_and_column() -> None:
    c = make(rules=[])
    df = with_value(with_value(good_rows(4), "n", 0, "-1"), "n", 1, "-2")
    df = with_value(df, "code", 3, "x")
    top = check_contract(df, c).top_reasons()
    assert top.rows(named=True)[0]["rule"] == "min"
    assert top.rows(named=True)[0]["rows"] == 2
    assert top.height == 2


def test_read_raw_file_formats(tmp_path: Path) -> None:
    df = good_rows(2)
    df.write_csv(tmp_path / "a.csv")
    assert read_raw_file(tmp_path / "a.csv").schema["n"] == pl.String
    df.with_columns(pl.col("n").cast(pl.Int64)).write_parquet(tmp_path / "a.parquet")
    assert read_raw_file(tmp_path / "a.parquet").schema["n"] == pl.Int64
    df.write_ndjson(tmp_path / "a.jsonl")
    assert read_raw_file(tmp_path / "a.jsonl").height == 2
    with pytest.raises(IngestError):
        read_raw_file(tmp_path / "a.xlsx")


def test_flights_sample_quarantines_cancelled_flights() -> None:
    c = load_contract(EXAMPLE / "flights.yaml")
    header = list(c.columns)
    rows = [
        [
            "2013",
            "1",
            "1",
            "517.0",
            "515",
            "2.0",
            "830.0",
            "819",
            "11.0",
            "UA",
            "1545",
            "N14228",
            "EWR",
            "IAH",
            "227.0",
            "1400",
            "5",
            "15",
            "2013-01-01T10:00:00Z",
        ],
        [
            "2013",
            "1",
            "1",
            "",
            "1630",
            "",
            "",
            "1815",
            "",
            "EV",
            "4308",
            "N18120",
            "EWR",
            "RDU",
            "",
            "416",
            "16",
            "30",
            "2013-01-01T21:00:00Z",
        ],
    ]
    df = pl.DataFrame(rows, schema=header, orient="row")
    res = check_contract(df, c)
    assert res.rows_valid == 1
    assert {(r["rule"], r["column"]) for r in res.failures.iter_rows(named=True)} == {
        ("not_null", "dep_time"),
        ("not_null", "arr_time"),
        ("not_null", "arr_delay"),
        ("not_null", "air_time"),
    }
    assert res.valid["arr_delay"].to_list() == [11.0]


def test_yaml_date_and_datetime_bounds(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(
        "name: b\nversion: 1\ncolumns:\n  t: {type: datetime, min: 2013-01-01T05:00:00Z, max: 2014-01-01}\n  d: {type: date, min: 2013-01-01}\n"
    )
    c = load_contract(path)
    assert c.columns["t"].min == datetime(2013, 1, 1, 5, tzinfo=UTC)
    assert c.columns["t"].max == datetime(2014, 1, 1, tzinfo=UTC)
    df = pl.DataFrame({"t": ["2013-01-01T04:00:00Z", "2013-06-01T00:00:00Z"], "d": ["2012-12-31", "2013-01-01"]})
    res = check_contract(df, c)
    assert rules_of(res) == [(0, "min", "d"), (0, "min", "t")]


def test_valid_is_built_once_on_access_and_can_be_replaced() -> None:
    c = make(rules=[])
    res = check_contract(with_value(good_rows(4), "n", 1, "-3"), c)
    assert res.rows_valid == 3
    first = res.valid
    assert first is res.valid  # cached
    assert first.height == res.rows_valid
    assert first["_row"].to_list() == [0, 2, 3]
    res.valid = first.head(1)
    assert res.valid.height == 1
    assert "rows_failed=1" in repr(res)


def test_freshness_judges_valid_rows_only() -> None:
    c = make(rules=[], freshness={"column": "ts", "max_age": "1d"})
    df = good_rows(2).with_columns(pl.Series("ts", ["2013-01-01T00:00:00Z", "2013-03-01T00:00:00Z"]))
    df = with_value(df, "n", 1, "-1")  # the fresh row fails: it must not make the batch look fresh
    res = check_contract(df, c, now=datetime(2013, 3, 1, 12, tzinfo=UTC))
    assert any("newest ts is 2013-01-01" in w for w in res.warnings)


def test_unique_is_a_rule_over_the_whole_batch_when_it_is_checked_in_chunks() -> None:
    from steward.data.contracts import batch_duplicates

    contract = parse_contract(
        {"name": "codes", "version": 1, "columns": {"code": {"type": "int", "unique": True}, "v": {"type": "string"}}},
        Path("codes.yaml"),
    )
    # "07" and "7" are the same int once cast: a duplicate across the two chunks, and 3 repeats inside the second
    batch = pl.DataFrame({"_row": list(range(6)), "code": ["07", "1", "2", "7", "3", "3"], "v": list("abcdef")})
    whole = check_contract(batch, contract)
    repeated = batch_duplicates(batch.lazy(), contract)
    assert sorted(repeated["code"].to_list()) == [3, 7]
    chunked = [check_contract(part, contract, duplicated=repeated) for part in (batch[:3], batch[3:])]
    failing = sorted(r for res in chunked for r in res.failures["_row"].to_list())
    assert failing == sorted(whole.failures["_row"].to_list()) == [0, 3, 4, 5]
    # without the batch's duplicates, each chunk alone misses the repeat that spans them
    alone = sorted(r for part in (batch[:3], batch[3:]) for r in check_contract(part, contract).failures["_row"].to_list())
    assert alone == [4, 5]


def test_a_column_written_twice_in_a_contract_is_refused_naming_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: dup\nversion: 1\ncolumns:\n  a: {type: int}\n  b: {type: string}\n  a: {type: float}\n")
    with pytest.raises(ContractError) as info:
        load_contract(path)
    assert info.value.code == "contract.duplicate_key" and "line 6 (first at line 4)" in info.value.message
