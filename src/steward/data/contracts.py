"""Data contracts: the YAML rules every row passes on its way from bronze to silver.

A contract declares columns (type, nullability, range, allowed values, regex,
uniqueness), the deduplication key, the event-time column, cross-column SQL
rules and batch freshness, and carries a version. :func:`check_contract` casts
and checks a batch in one vectorized Polars pass and returns the valid rows and
one failure row per (row, broken rule) for the quarantine table;
:func:`diff_contracts` classifies a contract change as compatible or breaking.

Example::

    contract = load_contract("contracts/flights.yaml")
    result = check_contract(bronze_batch, contract)
    result.valid        # typed rows for silver (built on first access)
    result.failures     # _row, rule, column, value, reason -> quarantine

Semantics, in one place:

* Rules: ``type`` (a non-null raw value does not parse; blank text is null),
  ``not_null``, ``min``/``max`` (inclusive), ``allowed``, ``regex`` (searched, so
  anchor with ``^...$``), ``unique`` (within the batch, nulls excluded),
  ``missing_column`` and ``rule:<name>``. Every check but ``not_null`` and
  ``missing_column`` passes on null; a SQL rule whose result is null passes, as a
  SQL ``CHECK`` constraint does. Key and event-time columns are never nullable.
* A row that breaks two rules gives two failure rows and counts once in
  ``rows_failed``; ``rows_in == rows_valid + rows_failed`` always.
* A contract column absent from the batch fails every row with
  ``missing_column`` (the batch goes to quarantine whole, with a reason) and adds a
  warning; columns that are neither in the contract nor ``_``-prefixed metadata are
  dropped with a warning. Key duplicates are not failures: the pipeline dedupes.
* Freshness is a batch warning, never a row failure.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import polars as pl

from steward._primitives import parse_duration
from steward.data._contract_check import FAILURE_SCHEMA, CheckResult, batch_duplicates, check_contract
from steward.data._contract_diff import ContractChange, ContractDiff, diff_contracts
from steward.data._contract_model import (
    COLUMN_TYPES,
    ColumnSpec,
    ColumnType,
    Contract,
    FreshnessSpec,
    RuleSpec,
    load_contract,
    parse_contract,
)
from steward.errors import IngestError

__all__ = [
    "COLUMN_TYPES",
    "DEFAULT_NULL_VALUES",
    "FAILURE_SCHEMA",
    "CheckResult",
    "ColumnSpec",
    "ColumnType",
    "Contract",
    "ContractChange",
    "ContractDiff",
    "FreshnessSpec",
    "RuleSpec",
    "batch_duplicates",
    "check_contract",
    "diff_contracts",
    "load_contract",
    "parse_contract",
    "parse_duration",
    "read_raw_file",
]

logger = logging.getLogger(__name__)

DEFAULT_NULL_VALUES = ("", "NA", "NULL", "null")


def read_raw_file(path: str | os.PathLike[str], *, null_values: tuple[str, ...] | list[str] = DEFAULT_NULL_VALUES) -> pl.DataFrame:
    """Read a data file as received, for checking: CSV as text, parquet and JSONL as stored.

    CSV columns stay text (the contract check does the casting, so a bad value
    becomes a ``type`` failure instead of a read error).

    Raises:
        IngestError: the file cannot be read at all, or its format is unknown.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            return pl.read_csv(p, infer_schema=False, null_values=list(null_values))
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(p)
        if suffix in (".jsonl", ".ndjson", ".json"):
            return pl.read_ndjson(p)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise IngestError(
            f"{p}: cannot read it as {suffix.lstrip('.')}: {exc}", hint="check the file is complete and in the format its suffix says"
        ) from None
    raise IngestError(f"{p}: unknown data format {suffix or '(no suffix)'}", hint="use a .csv, .parquet or .jsonl file")
