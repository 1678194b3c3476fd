"""How a contract column is cast from what a batch carries (text, or another type) to the contract type.

Private to the contract check (:mod:`steward.data._contract_check`): each column compiles to helper
expressions, a cast and a "does not parse" mask, evaluated inside the check's single pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from steward.data._contract_model import ColumnSpec

__all__ = ["_Cast", "_cast_expr"]

_INTS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
_FLOATS = (pl.Float32, pl.Float64)
_BOOL_TEXT = {"true": True, "false": False, "t": True, "f": False, "1": True, "0": False, "yes": True, "no": False, "y": True, "n": False}
# Naive datetime texts are read as UTC; text with an offset or 'Z' is converted to UTC.
_DT_AWARE = "%Y-%m-%dT%H:%M:%S%.f%#z"
_DT_NAIVE = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f%#z")


@dataclass
class _Cast:
    """How one column is cast, in three stages of one query.

    ``helpers`` (stage 1) read the raw column and are materialized once, so the
    cast (stage 2) and the "does not parse" mask (stage 3) reference columns
    instead of recomputing string work.
    """

    helpers: list[pl.Expr]
    cast: pl.Expr
    fails: pl.Expr | None


def _whole(x: pl.Expr) -> pl.Expr:
    """``x`` where it is a finite whole number that fits int64, else null."""
    return pl.when(x.is_finite() & (x == x.round()) & (x.abs() < 9.2e18)).then(x)


def _cast_expr(name: str, source: str, spec: ColumnSpec, src: pl.DataType) -> _Cast | None:
    """How to cast raw column ``source`` to the contract type of ``name``.

    Returns None when the column already has the contract type (typed batches pay
    nothing for casting); ``fails`` is None when the cast cannot fail.
    """
    target = spec.polars_dtype
    raw = pl.col(source)
    if src == target:
        return None
    t = spec.type
    if src == pl.String:
        txt_name, flt_name = f"__txt__{name}", f"__flt__{name}"
        stripped = raw.str.strip_chars()
        # Blank text is null, not a parse error, for every type except string.
        helpers = [pl.when(stripped.str.len_bytes() > 0).then(stripped).alias(txt_name)]
        text = pl.col(txt_name)
        if t in ("int64", "int32"):
            helpers.append(stripped.cast(pl.Float64, strict=False).alias(flt_name))
            # "517" parses directly; "517.0" (how floats are written out) parses through float.
            cast = pl.coalesce(text.cast(pl.Int64, strict=False), _whole(pl.col(flt_name)).cast(pl.Int64, strict=False)).cast(
                target, strict=False
            )
        elif t == "float64":
            cast = text.cast(pl.Float64, strict=False)
        elif t == "bool":
            cast = text.str.to_lowercase().replace_strict(_BOOL_TEXT, default=None, return_dtype=pl.Boolean)
        elif t == "date":
            cast = text.str.to_date("%Y-%m-%d", strict=False)
        elif t == "datetime":
            parts = [text.str.to_datetime(_DT_AWARE, time_unit="us", time_zone="UTC", strict=False)]
            parts += [text.str.to_datetime(f, time_unit="us", strict=False).dt.replace_time_zone("UTC") for f in _DT_NAIVE[:2]]
            parts.append(text.str.to_datetime(_DT_NAIVE[2], time_unit="us", time_zone="UTC", strict=False))
            parts.append(text.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
            cast = pl.coalesce(parts)
        else:  # pragma: no cover - string to string is the no-op above
            cast = text
        return _Cast(helpers, cast, text.is_not_null() & pl.col(name).is_null())
    fails = raw.is_not_null() & pl.col(name).is_null()
    if t == "string":
        return _Cast([], raw.cast(pl.String), None)
    if t in ("int64", "int32", "float64") and isinstance(src, (*_INTS, pl.Boolean)):
        return _Cast([], raw.cast(target, strict=False), fails)
    if t in ("int64", "int32") and isinstance(src, _FLOATS):
        return _Cast([], _whole(raw).cast(target, strict=False), fails)
    if t == "float64" and isinstance(src, _FLOATS):
        return _Cast([], raw.cast(pl.Float64), None)
    if t == "bool" and isinstance(src, _INTS):
        return _Cast(
            [], pl.when(raw == 1).then(pl.lit(True)).when(raw == 0).then(pl.lit(False)).otherwise(pl.lit(None, dtype=pl.Boolean)), fails
        )
    if t == "datetime" and isinstance(src, pl.Datetime):
        dt = raw.dt.replace_time_zone("UTC") if src.time_zone is None else raw.dt.convert_time_zone("UTC")
        return _Cast([], dt.dt.cast_time_unit("us"), None)
    if t == "datetime" and isinstance(src, pl.Date):
        return _Cast([], raw.cast(pl.Datetime("us")).dt.replace_time_zone("UTC"), None)
    if t == "date" and isinstance(src, pl.Datetime):
        dt = raw if src.time_zone is None else raw.dt.convert_time_zone("UTC")
        return _Cast([], dt.dt.date(), None)
    # Anything else (e.g. a list where a number belongs) cannot be read as the type.
    return _Cast([], pl.lit(None, dtype=target), raw.is_not_null())
