"""Checking a batch against a contract (private; import from ``steward.data.contracts``).

A contract compiles to vectorized Polars expressions: one cast per column and
one boolean "fails" mask per rule. They are evaluated in ONE pass over the
batch, together with a per-row "any rule failed" flag. The valid rows are the
rows without a flag; the failing rows (usually a small share) are gathered with
their masks, and the per-(row, rule) failures with their values and reasons are
built from that small frame only.

Before that pass, columns that arrive already typed get one parallel pass of
cheap reductions (min, max, null count; the distinct values of low-cardinality
string columns). A check those statistics prove cannot fail for this batch is
left out of the row pass, and a regex or allowed-values check on a
low-cardinality column is decided once per distinct value instead of once per
row. The result is identical to the unpruned check (``prune=False``), which the
tests compare under random data.

Null semantics: every check except ``not_null`` and ``missing_column`` passes
on null (a null is judged once, by the column's nullability); a SQL rule whose
result is null passes, as a SQL ``CHECK`` constraint does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import polars as pl

from steward.data._contract_cast import _cast_expr
from steward.data._contract_model import ColumnSpec, Contract

__all__ = ["FAILURE_SCHEMA", "CheckResult", "check_contract"]

logger = logging.getLogger(__name__)

FAILURE_SCHEMA: dict[str, pl.DataType] = {
    "_row": pl.Int64(),
    "rule": pl.String(),
    "column": pl.String(),
    "value": pl.String(),
    "reason": pl.String(),
}


class CheckResult:
    """The outcome of checking one batch.

    Attributes:
        valid: Rows that pass every rule: contract columns cast to contract types in
            contract order, then the pass-through ``_`` columns (including the row id).
            Built on first access (then kept): copying the passing rows is the costliest
            step of a check, and callers that only need the failures and the accounting
            (``steward contract check --data``) never pay for it.
        failures: One row per (row, broken rule) with columns ``_row, rule, column, value, reason``.
        rows_in: Rows checked.
        rows_valid: Rows in ``valid``.
        rows_failed: Distinct rows in ``failures``; ``rows_in == rows_valid + rows_failed``.
        warnings: Batch-level notes (dropped extra columns, missing columns, staleness).
        contract_version: The version of the contract used.
    """

    def __init__(
        self,
        valid: pl.DataFrame | Callable[[], pl.DataFrame],
        failures: pl.DataFrame,
        rows_in: int,
        rows_valid: int,
        rows_failed: int,
        warnings: list[str] | None = None,
        contract_version: str = "",
    ) -> None:
        self._valid: pl.DataFrame | None = valid if isinstance(valid, pl.DataFrame) else None
        self._make_valid: Callable[[], pl.DataFrame] | None = None if isinstance(valid, pl.DataFrame) else valid
        self.failures = failures
        self.rows_in = rows_in
        self.rows_valid = rows_valid
        self.rows_failed = rows_failed
        self.warnings: list[str] = list(warnings or [])
        self.contract_version = contract_version

    @property
    def valid(self) -> pl.DataFrame:
        """The passing rows (materialized on first access)."""
        if self._valid is None:
            assert self._make_valid is not None
            self._valid = self._make_valid()
            self._make_valid = None  # release the batch it was cut from
        return self._valid

    @valid.setter
    def valid(self, value: pl.DataFrame) -> None:
        self._valid, self._make_valid = value, None

    def __repr__(self) -> str:
        return (
            f"CheckResult(rows_in={self.rows_in}, rows_valid={self.rows_valid}, rows_failed={self.rows_failed}, "
            f"failures={self.failures.height}, warnings={len(self.warnings)}, contract_version={self.contract_version!r})"
        )

    def top_reasons(self, n: int = 10) -> pl.DataFrame:
        """The most frequent (rule, column) failures with a count, an example value and reason."""
        if self.failures.is_empty():
            return pl.DataFrame(
                schema={"rule": pl.String, "column": pl.String, "rows": pl.UInt32, "example_value": pl.String, "example_reason": pl.String}
            )
        return (
            self.failures.group_by("rule", "column", maintain_order=True)
            .agg(pl.len().alias("rows"), pl.col("value").first().alias("example_value"), pl.col("reason").first().alias("example_reason"))
            .sort("rows", descending=True, maintain_order=True)
            .head(n)
        )


@dataclass
class _Check:
    """One compiled rule: the mask is true where a row fails."""

    rule: str
    column: str | None
    mask: pl.Expr
    value: pl.Expr | None  # offending value as text, evaluated on the failing rows only
    reason: pl.Expr  # evaluated on the failing rows only


def _raw(name: str) -> str:
    """Where a column's raw value is kept when casting changes it."""
    return f"__raw__{name}"


def _lit_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _not_allowed(c: pl.Expr, spec: ColumnSpec, distinct: pl.Series | None = None) -> pl.Expr | None:
    """True where a value is outside ``allowed`` (null where the value is null); None if nothing can fail."""
    values = spec.allowed or []
    if distinct is not None:
        return _values_mask(c, distinct.filter(~distinct.is_in(pl.Series(values, dtype=pl.String).implode())))
    if len(values) <= 16:
        # A few equality tests beat a hash lookup by about 4x on millions of rows.
        hits = [c == pl.lit(v, dtype=spec.polars_dtype) for v in values]
        return ~pl.any_horizontal(hits) if len(hits) > 1 else ~hits[0]
    return ~c.is_in(pl.Series(values, dtype=spec.polars_dtype).implode())


@dataclass
class _Stats:
    """What one cheap reduction pass learned about the already-typed columns of a batch.

    Used only to skip checks that provably cannot fail (a batch whose smallest value
    is above ``min`` needs no per-row ``min`` mask); a skipped check reports exactly
    what the full check would have: nothing.
    """

    nulls: dict[str, int] = field(default_factory=dict)
    low: dict[str, Any] = field(default_factory=dict)
    high: dict[str, Any] = field(default_factory=dict)
    has_nan: set[str] = field(default_factory=set)
    # string column -> its distinct non-null values, for low-cardinality columns only
    distinct: dict[str, pl.Series] = field(default_factory=dict)


_SAMPLE = 20_000
_LOW_CARDINALITY = 0.05


def _stats(df: pl.DataFrame, contract: Contract, typed: Sequence[str]) -> _Stats:
    """One parallel pass of reductions over the columns that need no cast."""
    st = _Stats()
    exprs: list[pl.Expr] = []
    for name in typed:
        spec = contract.columns[name]
        st.nulls[name] = df.get_column(name).null_count()  # O(1): Arrow keeps it
        c = pl.col(name)
        if spec.min is not None or spec.max is not None:
            exprs += [c.min().alias(f"{name}\x00low"), c.max().alias(f"{name}\x00high")]
            if spec.type == "float64":
                exprs.append(c.is_nan().any().alias(f"{name}\x00nan"))
        few_allowed = spec.regex is None and spec.allowed is not None and len(spec.allowed) <= 16
        if spec.type == "string" and (spec.regex is not None or spec.allowed is not None) and not few_allowed:
            # Hashing a low-cardinality column once is cheaper than a regex (or a long is_in) per row;
            # a few equality tests are cheaper still. Sample the head to judge the cardinality.
            sample = df.get_column(name).head(_SAMPLE)
            if sample.len() and sample.n_unique() <= _LOW_CARDINALITY * sample.len():
                exprs.append(c.drop_nulls().unique().implode().alias(f"{name}\x00distinct"))
    if not exprs:
        return st
    row = df.select(exprs).row(0, named=True)
    for key, value in row.items():
        name, _, what = key.partition("\x00")
        if what == "low":
            st.low[name] = value
        elif what == "high":
            st.high[name] = value
        elif what == "nan" and value:
            st.has_nan.add(name)
        elif what == "distinct":
            st.distinct[name] = pl.Series(name, value, dtype=pl.String)
    return st


def _values_mask(c: pl.Expr, bad: pl.Series) -> pl.Expr | None:
    """True where the value is one of ``bad`` (None when ``bad`` is empty: nothing can fail)."""
    if bad.is_empty():
        return None
    if bad.len() <= 16:
        hits = [c == pl.lit(v, dtype=pl.String) for v in bad.to_list()]
        return pl.any_horizontal(hits) if len(hits) > 1 else hits[0]
    return c.is_in(bad.implode())


def _compile(
    contract: Contract,
    schema: pl.Schema,
    present: Sequence[str],
    stats: _Stats | None = None,
    duplicated: Mapping[str, pl.Series] | None = None,
) -> tuple[dict[str, str], list[pl.Expr], list[pl.Expr], list[_Check]]:
    """Compile the contract for a batch schema.

    Returns the renames that move raw columns aside (``name`` → ``__raw__name``) for
    the columns a cast changes, the cast helper expressions, the cast expressions
    (written back under ``name``), and the checks. Checks and rules therefore always read the cast value under the
    column's own name, and the raw text under ``__raw__name``.
    """
    renames: dict[str, str] = {}
    helpers: list[pl.Expr] = []
    casts: list[pl.Expr] = []
    checks: list[_Check] = []
    not_null = contract.not_nullable()
    st = stats or _Stats()
    for name in present:
        spec = contract.columns[name]
        compiled = _cast_expr(name, _raw(name), spec, schema[name])
        type_fail: pl.Expr | None = None
        raw_col = name
        if compiled is not None:
            type_fail = compiled.fails
            renames[name] = raw_col = _raw(name)
            helpers.extend(compiled.helpers)
            casts.append(compiled.cast.alias(name))
        c = pl.col(name)
        raw_text = pl.col(raw_col).cast(pl.String)
        if type_fail is not None:
            checks.append(
                _Check(
                    "type",
                    name,
                    type_fail,
                    raw_text,
                    pl.concat_str([pl.lit(f"{name}="), raw_text.str.slice(0, 80), pl.lit(f" does not parse as {spec.type}")]),
                )
            )
        if name in not_null and st.nulls.get(name, 1) > 0:
            why = "is a key column" if name in contract.key else "is the event time" if name == contract.event_time else "says not nullable"
            mask = c.is_null() if type_fail is None else c.is_null() & ~type_fail
            checks.append(_Check("not_null", name, mask, None, pl.lit(f"{name} is null but the contract {why}")))
        no_nan = name in st.low and name not in st.has_nan
        # all null (low is None) or smallest value in range: no row can fail
        if spec.min is not None and not (no_nan and (st.low[name] is None or st.low[name] >= spec.min)):
            checks.append(
                _Check(
                    "min",
                    name,
                    c < pl.lit(spec.min),
                    raw_text,
                    pl.concat_str([pl.lit(f"{name}="), c.cast(pl.String), pl.lit(f" is below min {_lit_text(spec.min)}")]),
                )
            )
        if spec.max is not None and not (no_nan and (st.high[name] is None or st.high[name] <= spec.max)):
            checks.append(
                _Check(
                    "max",
                    name,
                    c > pl.lit(spec.max),
                    raw_text,
                    pl.concat_str([pl.lit(f"{name}="), c.cast(pl.String), pl.lit(f" is above max {_lit_text(spec.max)}")]),
                )
            )
        if spec.allowed is not None:
            shown = ", ".join(_lit_text(v) for v in spec.allowed[:10]) + (", ..." if len(spec.allowed) > 10 else "")
            allowed_mask = _not_allowed(c, spec, st.distinct.get(name))
            if allowed_mask is not None:
                reason = pl.concat_str([pl.lit(f"{name}="), c.cast(pl.String), pl.lit(f" is not one of [{shown}]")])
                checks.append(_Check("allowed", name, allowed_mask, raw_text, reason))
        if spec.regex is not None:
            distinct = st.distinct.get(name)
            # Low-cardinality column: match each distinct value once, then flag rows holding a bad one.
            regex_mask = (
                ~c.str.contains(spec.regex) if distinct is None else _values_mask(c, distinct.filter(~distinct.str.contains(spec.regex)))
            )
            if regex_mask is not None:
                reason = pl.concat_str([pl.lit(f"{name}="), c.str.slice(0, 80), pl.lit(f" does not match {spec.regex}")])
                checks.append(_Check("regex", name, regex_mask, raw_text, reason))
        if spec.unique:
            known = duplicated.get(name) if duplicated is not None else None
            # a chunk of a larger batch is told which values repeat anywhere in the batch (batch_duplicates)
            repeated = c.is_in(known.implode()) if known is not None else c.is_duplicated()
            checks.append(
                _Check(
                    "unique",
                    name,
                    repeated & c.is_not_null(),
                    raw_text,
                    pl.concat_str([pl.lit(f"{name}="), c.cast(pl.String), pl.lit(" appears more than once in the batch")]),
                )
            )
    # Cross-column rules read the cast columns; a rule over a missing column is skipped (that column already fails every row).
    for rule in contract.rules:
        if not all(c in present for c in rule.columns()):
            continue
        desc = rule.description or rule.expr
        checks.append(_Check(f"rule:{rule.name}", None, ~rule.polars_expr(), None, pl.lit(f"rule '{rule.name}' failed: {desc}")))
    return renames, helpers, casts, checks


def batch_duplicates(lf: pl.LazyFrame, contract: Contract) -> dict[str, pl.Series]:
    """The values of each ``unique:`` column that occur more than once in a whole batch, cast as the check casts them.

    A batch checked in chunks passes these to :func:`check_contract`, so ``unique`` stays a rule over the batch,
    not over each chunk. It reads one column at a time with the streaming engine: memory is that column's
    distinct values, not the batch.
    """
    schema = lf.collect_schema()
    out: dict[str, pl.Series] = {}
    for name, spec in contract.columns.items():
        if not spec.unique or name not in schema:
            continue
        column = lf.select(pl.col(name))
        compiled = _cast_expr(name, name, spec, schema[name])
        if compiled is not None:
            column = column.with_columns(compiled.helpers).with_columns(compiled.cast.alias(name)).select(name)
        counts = column.drop_nulls().group_by(name).len().filter(pl.col("len") > 1)
        out[name] = counts.select(name).collect(engine="streaming").get_column(name)
    return out


def check_contract(
    df: pl.DataFrame,
    contract: Contract,
    *,
    row_id: str = "_row",
    now: datetime | None = None,
    prune: bool = True,
    duplicated: Mapping[str, pl.Series] | None = None,
) -> CheckResult:
    """Check a bronze batch against a contract, casting as part of the check.

    Contract columns may arrive as text (raw CSV/JSONL) or already typed (parquet).
    A non-null value that does not parse as the contract type fails rule ``type``;
    blank text is null. Datetimes parse ISO-8601 (``Z`` or an offset converts to UTC,
    naive text is read as UTC) to ``Datetime(us, UTC)``.

    A contract column missing from the batch fails every row with rule
    ``missing_column`` (the whole batch goes to quarantine with a reason, nothing is
    lost and the pipeline does not stop) and adds a warning. Extra columns not in the
    contract and not starting with ``_`` are dropped from ``valid`` with a warning.
    Key duplicates are not failures (the pipeline dedupes by key).

    Args:
        df: The bronze rows. Columns starting with ``_`` pass through untouched.
        contract: The contract.
        row_id: Name of a unique integer row id column; added (0..n-1) when absent.
        now: Reference time for freshness (default: the current UTC time).
        prune: Skip per-row checks that column statistics prove cannot fail (same result, less work).
        duplicated: For a chunk of a larger batch: per ``unique:`` column, the values repeated anywhere in the
            batch (:func:`batch_duplicates`); without it, ``unique`` is checked within ``df``.

    Returns:
        The per-(row, rule) failures, the accounting and the valid rows (built on first
        access of ``CheckResult.valid``).
    """
    warnings: list[str] = []
    if row_id not in df.columns:
        df = df.with_row_index(row_id).with_columns(pl.col(row_id).cast(pl.Int64))
    elif df.schema[row_id] != pl.Int64:
        df = df.with_columns(pl.col(row_id).cast(pl.Int64))
    schema = df.schema
    present = [c for c in contract.columns if c in schema]
    missing = [c for c in contract.columns if c not in schema]
    passthrough = [c for c in df.columns if c.startswith("_")]
    if row_id not in passthrough:
        passthrough.append(row_id)
    extra = [c for c in df.columns if c not in contract.columns and not c.startswith("_") and c != row_id]
    if extra:
        warnings.append(f"dropped {len(extra)} column(s) not in contract {contract.name} v{contract.version}: {', '.join(extra)}")
    if missing:
        warnings.append(f"batch lacks contract column(s) {', '.join(missing)}: every row fails rule missing_column")

    typed = [n for n in present if schema[n] == contract.columns[n].polars_dtype]
    stats = _stats(df, contract, typed) if prune else None
    renames, helpers, casts, checks = _compile(contract, schema, present, stats, duplicated)
    for name in missing:
        checks.append(_Check("missing_column", name, pl.lit(True), None, pl.lit(f"column {name} is missing from the batch")))

    # ONE pass: casts, every mask, and the any-failed flag.
    masks = [ch.mask.alias(f"__fail_{i}") for i, ch in enumerate(checks)]
    lf = df.lazy()
    if renames:
        lf = lf.rename(renames)
    if helpers:
        lf = lf.with_columns(helpers)
    if casts:
        lf = lf.with_columns(casts)
    bad_flag = "__bad__"
    if masks:
        lf = lf.with_columns(masks).with_columns(
            pl.any_horizontal([pl.col(f"__fail_{i}") for i in range(len(checks))]).fill_null(False).alias(bad_flag)
        )
    else:
        lf = lf.with_columns(pl.lit(False).alias(bad_flag))
    # The in-memory engine returns one chunk per column, which the gather of failing rows needs to be cheap.
    wide = lf.collect(engine="in-memory")

    out_cols = [pl.col(n) if n in present else pl.lit(None, dtype=contract.columns[n].polars_dtype).alias(n) for n in contract.columns]
    out_cols += [pl.col(c) for c in passthrough]
    bad_mask = wide.get_column(bad_flag)
    n_bad = int(bad_mask.sum())
    fail_cols = [f"__fail_{i}" for i in range(len(checks))]
    make_valid: pl.DataFrame | Callable[[], pl.DataFrame]
    if n_bad == 0:
        make_valid = wide.select(out_cols)  # zero-copy: every column is the batch's own or its cast
        bad = wide.clear()
    else:
        keep = ~bad_mask
        make_valid = partial(_cut_valid, wide.select(out_cols), keep)
        # Failing rows are few: gathering them by index costs their number, not the batch's
        # (a filter would scan the whole batch once per column, masks included).
        bad = wide.select([row_id, *present, *renames.values(), *fail_cols])[bad_mask.arg_true()]

    failures = _failures(bad, checks, row_id)
    rows_failed = bad.height
    if contract.freshness is not None and contract.freshness.column in present:
        newest = wide.select(pl.col(contract.freshness.column).filter(~pl.col(bad_flag)).max()).item()
        stale = _freshness(newest, contract, now)
        if stale:
            warnings.append(stale)
    result = CheckResult(
        valid=make_valid,
        failures=failures,
        rows_in=df.height,
        rows_valid=df.height - rows_failed,
        rows_failed=rows_failed,
        warnings=warnings,
        contract_version=contract.version,
    )
    logger.debug(
        "contract %s v%s: %d in, %d valid, %d failed",
        contract.name,
        contract.version,
        result.rows_in,
        result.rows_valid,
        result.rows_failed,
    )
    return result


def _failures(bad: pl.DataFrame, checks: list[_Check], row_id: str) -> pl.DataFrame:
    """Per-(row, rule) failures, built from the failing rows only (ordered by rule, then row)."""
    if bad.is_empty():
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    parts: list[pl.DataFrame] = []
    for i, ch in enumerate(checks):
        hit_mask = bad.get_column(f"__fail_{i}")
        if not hit_mask.any():
            continue
        hit = bad.filter(hit_mask.fill_null(False))
        parts.append(
            hit.select(
                pl.col(row_id).cast(pl.Int64).alias("_row"),
                pl.lit(ch.rule, dtype=pl.String).alias("rule"),
                pl.lit(ch.column, dtype=pl.String).alias("column"),
                (ch.value if ch.value is not None else pl.lit(None, dtype=pl.String)).alias("value"),
                ch.reason.cast(pl.String).alias("reason"),
            )
        )
    return pl.concat(parts)


def _cut_valid(frame: pl.DataFrame, keep: pl.Series) -> pl.DataFrame:
    # Filtering by a computed Series is several times faster than by an expression on a wide frame.
    return frame.filter(keep)


def _freshness(newest: Any, contract: Contract, now: datetime | None) -> str | None:
    fresh = contract.freshness
    assert fresh is not None
    if newest is None:
        return f"freshness: no valid {fresh.column} values in the batch to judge freshness"
    if isinstance(newest, datetime):
        newest_dt = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
    elif isinstance(newest, date):
        newest_dt = datetime(newest.year, newest.month, newest.day, tzinfo=UTC)
    else:  # pragma: no cover - the model only allows date/datetime
        return None
    ref = now or datetime.now(UTC)
    if ref.tzinfo is None:
        ref = ref.replace(tzinfo=UTC)
    age = ref - newest_dt
    if age > fresh.max_age_td:
        return f"freshness: newest {fresh.column} is {newest_dt.isoformat()} ({_age(age.total_seconds())} old), older than max_age {fresh.max_age}"
    return None


def _age(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 60:.0f}m"
