"""The data contract file, as pydantic models (private; import from ``steward.data.contracts``).

A contract is a YAML file that declares, for one dataset, the columns with
their types and rules, the deduplication key, the event-time column, cross-column
rules (SQL boolean expressions) and freshness. Every model forbids unknown keys,
and every error names the file, the key path and the fix, the same way
``steward.yaml`` errors do.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from steward._primitives import DurationText, parse_duration, to_utc
from steward._yaml import read_yaml
from steward.errors import ContractError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "COLUMN_TYPES",
    "ColumnSpec",
    "ColumnType",
    "Contract",
    "FreshnessSpec",
    "RuleSpec",
    "load_contract",
    "parse_contract",
]

logger = logging.getLogger(__name__)

ColumnType = Literal["int64", "int32", "float64", "string", "bool", "date", "datetime"]
COLUMN_TYPES: tuple[str, ...] = ("int64", "int32", "float64", "string", "bool", "date", "datetime")
_NUMERIC = ("int64", "int32", "float64")
_TEMPORAL = ("date", "datetime")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _polars_dtype(type_: str) -> pl.DataType:
    return {
        "int64": pl.Int64(),
        "int32": pl.Int32(),
        "float64": pl.Float64(),
        "string": pl.String(),
        "bool": pl.Boolean(),
        "date": pl.Date(),
        "datetime": pl.Datetime("us", "UTC"),
    }[type_]


def _to_python(value: Any, type_: str) -> Any:
    """Coerce a YAML scalar to the Python value of a column type, or raise ValueError."""
    if value is None:
        raise ValueError("null is not a value; use 'nullable' for nulls")
    if type_ in ("int64", "int32"):
        if isinstance(value, bool) or not isinstance(value, int | float) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{value!r} is not a whole number")
        iv = int(value)
        bound = 2**31 if type_ == "int32" else 2**63
        if not -bound <= iv < bound:
            raise ValueError(f"{value!r} does not fit {type_}")
        return iv
    if type_ == "float64":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{value!r} is not a number")
        return float(value)
    if type_ == "string":
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string (quote it in YAML)")
        return value
    if type_ == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not true/false")
        return value
    if type_ == "date":
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise ValueError(f"{value!r} is not a date (write YYYY-MM-DD)")
    # datetime: naive values are UTC
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if isinstance(value, datetime | str):
        try:
            return to_utc(value)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a datetime (write ISO-8601, e.g. '2013-01-01T00:00:00Z')")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ColumnSpec(_Strict):
    """One column of a contract.

    Attributes:
        type: The silver type the raw value must parse as.
        nullable: Whether null is allowed (key and event-time columns are never nullable).
        min: Inclusive lower bound (numbers; ISO text for date/datetime).
        max: Inclusive upper bound.
        allowed: The only values allowed (null is judged by ``nullable``, not here).
        regex: A pattern the text must match (Rust regex syntax, searched anywhere: anchor with ``^...$``).
        unique: Values must be unique within a batch (nulls excluded).
        description: What the column means, for people.
    """

    type: ColumnType
    nullable: bool = True
    # Any here: the column's type decides what a bound must be, checked (and coerced) below.
    min: Any = None
    max: Any = None
    allowed: list[Any] | None = None
    regex: str | None = None
    unique: bool = False
    description: str | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _type_alias(cls, value: Any) -> Any:
        aliases = {
            "int": "int64",
            "integer": "int64",
            "float": "float64",
            "double": "float64",
            "str": "string",
            "utf8": "string",
            "boolean": "bool",
            "timestamp": "datetime",
        }
        if isinstance(value, str):
            v = value.strip().lower()
            return aliases.get(v, v)
        return value

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            pl.Series([""], dtype=pl.String).str.contains(value)
        except Exception as exc:  # polars raises ComputeError with the regex parser's message
            first = str(exc).strip().splitlines()
            raise ValueError(f"not a valid regex ({' '.join(x.strip() for x in first[:4])})") from None
        return value

    @model_validator(mode="after")
    def _bounds_fit_type(self) -> ColumnSpec:
        if self.regex is not None and self.type != "string":
            raise ValueError(f"'regex': applies only to string columns; this one is {self.type}")
        for key in ("min", "max"):
            value = getattr(self, key)
            if value is None:
                continue
            if self.type not in _NUMERIC + _TEMPORAL:
                raise ValueError(f"'{key}': applies only to numeric, date and datetime columns; this one is {self.type}")
            try:
                setattr(self, key, _to_python(value, self.type))
            except ValueError as exc:
                raise ValueError(f"'{key}': {exc}") from None
        if self.min is not None and self.max is not None and self.min > self.max:  # type: ignore[operator]
            raise ValueError(f"'min': {self.min} is greater than max {self.max}")
        if self.allowed is not None:
            if not self.allowed:
                raise ValueError("'allowed': is empty, so no value could pass; remove it or list the values")
            out = []
            for i, v in enumerate(self.allowed):
                try:
                    out.append(_to_python(v, self.type))
                except ValueError as exc:
                    raise ValueError(f"'allowed[{i}]': {exc}") from None
            self.allowed = out
        return self

    @property
    def polars_dtype(self) -> pl.DataType:
        """The Polars type of this column in silver."""
        return _polars_dtype(self.type)


class RuleSpec(_Strict):
    """A cross-column rule: a SQL boolean expression that is true for a good row.

    A rule whose result is null (e.g. a compared column is null) counts as
    passed, as in a SQL ``CHECK`` constraint: nullability is judged by the
    column's own ``nullable`` rule, never twice.

    Attributes:
        name: Short identifier; failures are reported as ``rule:<name>``.
        expr: SQL boolean expression over contract columns (Polars SQL dialect).
        description: What the rule protects, for people.
    """

    name: str
    expr: str
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError("use letters, digits and '_' (starting with a letter)")
        return value

    @field_validator("expr")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            pl.sql_expr(value)
        except Exception as exc:  # polars SQL parser errors
            raise ValueError(f"not a valid SQL expression ({str(exc).strip().splitlines()[0]})") from None
        return value

    def polars_expr(self) -> pl.Expr:
        """The compiled Polars expression (true = row passes)."""
        return pl.sql_expr(self.expr)

    def columns(self) -> list[str]:
        """The columns the expression reads."""
        return sorted(set(self.polars_expr().meta.root_names()))


class FreshnessSpec(_Strict):
    """Batch-level freshness: the newest value of ``column`` must be younger than ``max_age``.

    A stale batch is a warning in the check result, never a row failure.
    """

    column: str
    max_age: DurationText

    @property
    def max_age_td(self) -> timedelta:
        """``max_age`` as a timedelta."""
        return parse_duration(self.max_age)


class Contract(_Strict):
    """A data contract: the rules every row must pass on its way from bronze to silver.

    Attributes:
        name: The dataset's name (e.g. ``flights``).
        version: The contract's version (``"1.2.0"`` or a whole number as text).
        description: What the dataset is, for people.
        key: Deduplication key; duplicates are dropped by the pipeline, never quarantined.
            Key columns are implicitly not nullable.
        event_time: Column giving the event time (silver is partitioned by its date);
            implicitly not nullable; must be a date or datetime column.
        columns: Column name → spec, in silver column order.
        rules: Cross-column rules.
        freshness: Batch-level freshness (a warning when stale).
    """

    name: str
    version: str
    description: str | None = None
    key: list[str] = Field(default_factory=list)
    event_time: str | None = None
    columns: dict[str, ColumnSpec]
    rules: list[RuleSpec] = Field(default_factory=list)
    freshness: FreshnessSpec | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("version")
    @classmethod
    def _version_form(cls, value: str) -> str:
        if not re.match(r"^\d+(\.\d+){0,2}$", value.strip()):
            raise ValueError("write a version like '1.2.0' or a whole number")
        return value.strip()

    @field_validator("columns")
    @classmethod
    def _some_columns(cls, value: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        if not value:
            raise ValueError("a contract needs at least one column")
        for name in value:
            if not name or name.startswith("_"):
                raise ValueError(f"column {name!r}: names starting with '_' are reserved for pipeline metadata")
        return value

    @model_validator(mode="after")
    def _references(self) -> Contract:
        # Cross-field checks raise ContractError with an exact key path; parse_contract adds the file.
        cols = self.columns
        known = ", ".join(cols)
        for i, k in enumerate(self.key):
            if k not in cols:
                raise _keyed(f"key.{i}", f"key column '{k}' is not declared under 'columns'", _nearest(k, cols, known))
        if len(set(self.key)) != len(self.key):
            raise _keyed("key", "a key column is listed twice", "list each key column once")
        if self.event_time is not None:
            if self.event_time not in cols:
                raise _keyed(
                    "event_time", f"column '{self.event_time}' is not declared under 'columns'", _nearest(self.event_time, cols, known)
                )
            if cols[self.event_time].type not in _TEMPORAL:
                raise _keyed(
                    "event_time",
                    f"column '{self.event_time}' is {cols[self.event_time].type}",
                    "the event time must be a date or datetime column",
                )
        if self.freshness is not None:
            fc = self.freshness.column
            if fc not in cols:
                raise _keyed("freshness.column", f"column '{fc}' is not declared under 'columns'", _nearest(fc, cols, known))
            if cols[fc].type not in _TEMPORAL:
                raise _keyed("freshness.column", f"column '{fc}' is {cols[fc].type}", "freshness needs a date or datetime column")
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                raise _keyed(f"rules.{i}.name", f"rule name '{rule.name}' is used twice", "give every rule its own name")
            seen.add(rule.name)
            for c in rule.columns():
                if c not in cols:
                    raise _keyed(
                        f"rules.{i}.expr", f"rule '{rule.name}' reads column '{c}', which is not declared", _nearest(c, cols, known)
                    )
        return self

    # -- derived views -------------------------------------------------------
    def not_nullable(self) -> set[str]:
        """Columns that may not be null: declared ``nullable: false`` plus key and event-time columns."""
        out = {n for n, c in self.columns.items() if not c.nullable}
        out.update(self.key)
        if self.event_time:
            out.add(self.event_time)
        return out

    def polars_schema(self) -> dict[str, pl.DataType]:
        """The silver column types, in contract order."""
        return {n: c.polars_dtype for n, c in self.columns.items()}

    def arrow_schema(self) -> pa.Schema:
        """The silver Arrow schema (nullability from the contract), in contract order."""
        import pyarrow as pa

        types = {
            "int64": pa.int64(),
            "int32": pa.int32(),
            "float64": pa.float64(),
            "string": pa.large_string(),
            "bool": pa.bool_(),
            "date": pa.date32(),
            "datetime": pa.timestamp("us", tz="UTC"),
        }
        strict = self.not_nullable()
        return pa.schema([pa.field(n, types[c.type], nullable=n not in strict) for n, c in self.columns.items()])


def _nearest(name: str, cols: dict[str, ColumnSpec], known: str) -> str:
    close = difflib.get_close_matches(name, list(cols), n=1)
    return f"did you mean '{close[0]}'?" if close else f"declared columns: {known}"


def _keyed(path: str, message: str, fix: str) -> ContractError:
    return ContractError(f"key '{path}': {message}", hint=fix, details={"key": path})


# -- loading -------------------------------------------------------------------
def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = Contract
    for i, part in enumerate(loc[:-1]):
        if part == "columns" and i == 0:
            model = ColumnSpec
        elif part == "rules" and i == 0:
            model = RuleSpec
        elif part == "freshness" and i == 0:
            model = FreshnessSpec
    return list(model.model_fields)


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _format_validation_error(path: Path, exc: ValidationError) -> ContractError:
    lines: list[str] = []
    keys: list[str] = []
    for err in exc.errors():
        # pydantic appends the union member or validator name to some locations; drop those
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in {"function-after", "function-before"})))
        key = _loc(loc)
        keys.append(key)
        if err["type"] == "extra_forbidden":
            known = _known_keys(loc)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            fix = f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(known)}"
            lines.append(f"unknown key '{key}': {fix}")
        elif err["type"] == "missing":
            lines.append(f"missing key '{key}': add it")
        elif err["type"] == "literal_error" and loc and loc[-1] == "type":
            lines.append(f"key '{key}': unknown type {err.get('input')!r}; use one of {', '.join(COLUMN_TYPES)}")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            # A column-level check names its field first ("'min': ..."): make it part of the key path.
            m = re.match(r"^'(\w+)(?:\[(\d+)\])?': (.*)$", msg, re.S)
            if m:
                key = ".".join(p for p in (key, m.group(1), m.group(2)) if p)
                keys[-1] = key
                msg = m.group(3)
            got = err.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            lines.append(f"key '{key}': {msg}{shown}")
    # Unknown keys first: a typo usually explains the "missing" errors that follow it.
    order = sorted(range(len(lines)), key=lambda i: not lines[i].startswith("unknown key"))
    keys = [keys[i] for i in order]
    lines = [lines[i] for i in order]
    # Several union members can report the same key; keep the first message per key.
    uniq: dict[str, str] = {}
    for k, line in zip(keys, lines, strict=True):
        uniq.setdefault(k, line)
    ordered = list(uniq.values())
    more = f" (+{len(ordered) - 1} more: {'; '.join(ordered[1:])})" if len(ordered) > 1 else ""
    return ContractError(
        f"{path}: {ordered[0]}{more}",
        hint="fix the key named above in the contract file",
        details={"errors": ordered, "file": str(path), "key": next(iter(uniq))},
    )


def parse_contract(data: Any, path: Path) -> Contract:
    """Validate an already-parsed YAML document as a contract.

    Args:
        data: The parsed YAML (a mapping).
        path: The file it came from (named in errors).

    Raises:
        ContractError: naming the file, the key path and the fix.
    """
    if not isinstance(data, dict):
        raise ContractError(
            f"{path}: a contract must be a mapping with 'name', 'version' and 'columns'",
            hint="start the file with 'name: NAME', 'version: 1' and a 'columns:' mapping",
            details={"file": str(path)},
        )
    try:
        return Contract.model_validate(data)
    except ValidationError as exc:
        raise _format_validation_error(path, exc) from None
    except ContractError as exc:
        raise ContractError(f"{path}: {exc.message}", hint=exc.hint, details={**exc.details, "file": str(path)}) from None


def load_contract(path: str | os.PathLike[str]) -> Contract:
    """Load and validate a contract YAML file.

    Raises:
        ContractError: the file is missing, is not YAML, or is invalid (the message names the key and the fix).
    """
    p = Path(path)
    if not p.is_file():
        raise ContractError(
            f"{p}: no such contract file", code="contract.missing", hint="check the path (contracts live next to steward.yaml)"
        )
    # strict: a column or rule written twice is an error naming both lines (YAML would keep only the last)
    data = read_yaml(p, ContractError, "contract")
    logger.debug("loaded contract %s", p)
    return parse_contract(data, p)
