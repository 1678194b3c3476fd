"""Statistics pruning skips only checks that cannot fail: results equal the unpruned check, typed input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steward.data.contracts import CheckResult, check_contract, parse_contract

ALLOWED = [f"V{i:02d}" for i in range(20)]  # more than 16 values: the distinct-values path, not equality tests

CONTRACT = parse_contract(
    {
        "name": "typed",
        "version": "1",
        "columns": {
            "i": {"type": "int64", "min": 0, "max": 100, "nullable": False},
            "f": {"type": "float64", "min": -1.0, "max": 1.0},
            "t": {"type": "datetime", "min": "2013-01-01T00:00:00Z", "max": "2013-12-31T23:59:59Z"},
            "code": {"type": "string", "regex": "^[A-Z]{2}$"},
            "v": {"type": "string", "allowed": ALLOWED},
            "o": {"type": "string", "allowed": ["EWR", "JFK", "LGA"]},
        },
        "rules": [{"name": "i_not_f", "expr": "i > f"}],
    },
    Path("typed.yaml"),
)


def canon(res: CheckResult) -> tuple[list[tuple[int, str, str | None, str | None, str]], list[int]]:
    rows = sorted((r["_row"], r["rule"], r["column"], r["value"], r["reason"]) for r in res.failures.iter_rows(named=True))
    return rows, sorted(res.valid["_row"].to_list())


def frame(
    i: list[int | None], f: list[float | None], t: list[datetime | None], code: list[str | None], v: list[str | None], o: list[str | None]
) -> pl.DataFrame:
    return pl.DataFrame(
        {"i": i, "f": f, "t": t, "code": code, "v": v, "o": o},
        schema={"i": pl.Int64, "f": pl.Float64, "t": pl.Datetime("us", "UTC"), "code": pl.String, "v": pl.String, "o": pl.String},
    )


def test_low_cardinality_strings_use_distinct_values_and_still_flag_every_bad_row() -> None:
    n = 400
    base = datetime(2013, 6, 1, tzinfo=UTC)
    codes = ["AB", "CD", "abc"] * (n // 3) + ["AB"] * (n % 3)
    vals = ["V01", "V02", "BAD"] * (n // 3) + ["V01"] * (n % 3)
    df = frame(list(range(1, n + 1)), [0.5] * n, [base] * n, codes, vals, ["JFK"] * n)
    df = df.with_columns(pl.when(pl.col("i") > 100).then(50).otherwise(pl.col("i")).alias("i"))
    pruned, full = check_contract(df, CONTRACT), check_contract(df, CONTRACT, prune=False)
    assert canon(pruned) == canon(full)
    bad_code = {r for r, c in enumerate(codes) if c == "abc"}
    bad_val = {r for r, v in enumerate(vals) if v == "BAD"}
    assert set(pruned.failures.filter(pl.col("rule") == "regex")["_row"].to_list()) == bad_code
    assert set(pruned.failures.filter(pl.col("rule") == "allowed")["_row"].to_list()) == bad_val
    assert pruned.rows_failed == len(bad_code | bad_val)


def test_empty_and_all_null_batches() -> None:
    empty = frame([], [], [], [], [], [])
    res = check_contract(empty, CONTRACT)
    assert res.rows_in == res.rows_valid == res.rows_failed == 0
    nulls = frame([1, 2], [None, None], [None, None], [None, None], [None, None], [None, None])
    res = check_contract(nulls, CONTRACT)
    assert res.failures.is_empty()
    assert res.rows_valid == 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(min_value=-5, max_value=105)),
            st.one_of(st.none(), st.floats(min_value=-2, max_value=2, allow_nan=False), st.just(float("nan"))),
            st.one_of(st.none(), st.integers(min_value=-3, max_value=370)),
            st.sampled_from([None, "AB", "ZZ", "abc", "A1"]),
            st.sampled_from([None, "V00", "V19", "X"]),
            st.sampled_from([None, "EWR", "LGA", "BOS"]),
        ),
        max_size=60,
    )
)
def test_pruned_check_equals_full_check(
    rows: list[tuple[int | None, float | None, int | None, str | None, str | None, str | None]],
) -> None:
    start = datetime(2013, 1, 1, tzinfo=UTC)
    df = frame(
        [r[0] for r in rows],
        [r[1] for r in rows],
        [None if r[2] is None else start + timedelta(days=r[2]) for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        [r[5] for r in rows],
    )
    pruned, full = check_contract(df, CONTRACT), check_contract(df, CONTRACT, prune=False)
    assert canon(pruned) == canon(full)
    assert pruned.rows_in == pruned.rows_valid + pruned.rows_failed
