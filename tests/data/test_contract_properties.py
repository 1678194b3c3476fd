"""Property: under any mix of injected bad values, the accounting balances and the flagged rows are exact."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steward.data.contracts import check_contract, parse_contract

CONTRACT = parse_contract(
    {
        "name": "p",
        "version": "1",
        "key": ["id"],
        "columns": {
            "id": {"type": "int64"},
            "n": {"type": "int64", "min": 0, "max": 9, "nullable": False},
            "s": {"type": "string", "allowed": ["a", "b"]},
            "f": {"type": "float64", "max": 1.0},
        },
        "rules": [{"name": "n_not_three", "expr": "n <> 3"}],
    },
    Path("p.yaml"),
)

# Each injection: (column, raw value, the rules it must break).
BAD = {
    "n_text": ("n", "x", {"type"}),
    "n_null": ("n", None, {"not_null"}),
    "n_low": ("n", "-1", {"min"}),
    "n_high": ("n", "99", {"max"}),
    "n_three": ("n", "3", {"rule:n_not_three"}),
    "s_other": ("s", "z", {"allowed"}),
    "f_high": ("f", "2.5", {"max"}),
    "f_text": ("f", "1,5", {"type"}),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_rows=st.integers(min_value=1, max_value=40),
    injections=st.lists(st.tuples(st.integers(min_value=0, max_value=39), st.sampled_from(sorted(BAD))), max_size=30),
)
def test_accounting_balances_under_injected_bad_rows(n_rows: int, injections: list[tuple[int, str]]) -> None:
    cols: dict[str, list[str | None]] = {
        "id": [str(i) for i in range(n_rows)],
        "n": [str(i % 3) for i in range(n_rows)],  # 0, 1, 2: all good
        "s": ["a"] * n_rows,
        "f": ["0.5"] * n_rows,
    }
    expected: dict[int, set[tuple[str, str | None]]] = {}
    for row, label in injections:
        if row >= n_rows:
            continue
        col, value, _ = BAD[label]
        cols[col][row] = value
    # What each row must break, judged from its final values.
    for row in range(n_rows):
        for label, (col, value, rules) in BAD.items():
            if cols[col][row] == value:
                expected.setdefault(row, set()).update((r, None if r.startswith("rule:") else col) for r in rules)
            del label
    df = pl.DataFrame(cols, schema=dict.fromkeys(cols, pl.String))
    res = check_contract(df, CONTRACT)

    assert res.rows_in == n_rows
    assert res.rows_in == res.rows_valid + res.rows_failed
    assert res.rows_failed == res.failures["_row"].n_unique() if res.failures.height else res.rows_failed == 0
    got: dict[int, set[tuple[str, str | None]]] = {}
    for r in res.failures.iter_rows(named=True):
        got.setdefault(r["_row"], set()).add((r["rule"], r["column"]))
    assert got == expected
    assert set(res.valid["_row"].to_list()) == set(range(n_rows)) - set(expected)
    assert res.valid["n"].dtype == pl.Int64
