"""The one implementation of feature computation, shared by training and serving.

* :func:`build_gold` turns a source table into a gold feature table: one row per
  entity and ``feature_time`` (the instant the values start to hold).
* :func:`add_request_features` computes the features taken from the event row itself.
* :func:`join_point_in_time` attaches, to each event, the latest gold row per table
  that was known at the event time, and :func:`finalize` applies the rules that
  both paths share (TTL, empty windows). Serving's online lookup ends in the same
  :func:`finalize`, so offline and online vectors are computed identically.

Windowed aggregates and leakage: a source row counts only from
``timestamp + available_after`` (its *known* time; e.g. a flight's arrival is
known only after it lands). The window of an event at ``t`` covers rows known in
``[t - window, t)``: it ends strictly before the event. The gold table stores
the running value at each instant it changes (a row becoming known, or leaving
the window), so a backward as-of join that excludes exact matches gives the
exact sliding-window value for any event time.
"""

from __future__ import annotations

import logging
from typing import TypeVar

import polars as pl

from steward.errors import SpecError
from steward.features.definitions import FEATURE_TIME, FeatureSet, FeatureTable
from steward.spec import Spec

__all__ = [
    "add_request_features",
    "as_utc",
    "build_gold",
    "finalize",
    "gold_features",
    "join_point_in_time",
    "join_table",
    "mask_online",
]

logger = logging.getLogger(__name__)

UTC_US = pl.Datetime("us", "UTC")
FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def as_utc(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Cast a timestamp column to ``Datetime(us, UTC)`` (naive times are taken as UTC; strings parsed)."""
    if dtype == pl.String:
        return expr.str.to_datetime(time_unit="us", time_zone="UTC")
    if isinstance(dtype, pl.Datetime):
        e = expr.dt.replace_time_zone("UTC") if dtype.time_zone is None else expr.dt.convert_time_zone("UTC")
        return e.dt.cast_time_unit("us")
    if dtype == pl.Date:
        return expr.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return expr.cast(UTC_US)


def _check_columns(spec: Spec, where: str, frame: pl.DataFrame | list[str], exprs: dict[str, pl.Expr], extra: list[str]) -> None:
    columns = frame if isinstance(frame, list) else frame.columns
    need = set(extra)
    for e in exprs.values():
        need.update(e.meta.root_names())
    missing = sorted(need - set(columns))
    if missing:
        raise SpecError(
            f"{spec.spec_path}: key '{where}': column(s) {', '.join(missing)} not in the source",
            code="spec.feature_column",
            hint=f"source columns: {', '.join(columns)}",
        )


def gold_features(table: FeatureTable, gold_columns: list[str]) -> list[str]:
    """Feature columns of a gold table (everything but keys and ``feature_time``)."""
    skip = {*table.keys, FEATURE_TIME}
    return [c for c in gold_columns if c not in skip]


def build_gold(spec: Spec, table: FeatureTable, source: pl.DataFrame) -> pl.DataFrame:
    """Compute a gold feature table from its source rows.

    Returns keys, ``feature_time`` (absent for static tables) and feature columns,
    sorted by ``feature_time`` then keys, with rows whose keys are null dropped
    (a null key never joins). Deterministic for a given source version.
    """
    where = f"features.tables.{table.name}"
    keys = list(table.keys)
    ts = table.timestamp
    if table.kind == "transform":
        out = table.load_transform(spec)(source)
        if not isinstance(out, pl.DataFrame):
            raise SpecError(f"{spec.spec_path}: key '{where}.transform': {table.transform} must return a polars.DataFrame")
        _check_columns(spec, f"{where}.transform (its output)", out, {}, [*keys, *([ts] if ts else [])])
        feats = [c for c in out.columns if c not in {*keys, ts, FEATURE_TIME}]
        frame = out.select(*keys, *([ts] if ts else []), *feats)
    elif table.kind == "columns":
        _check_columns(spec, where, source, table.columns, [*keys, *([ts] if ts else [])])
        frame = source.select(*keys, *([ts] if ts else []), *[e.alias(n) for n, e in table.columns.items()])
    else:
        assert ts is not None
        _check_columns(spec, where, source, {a.name: a.expr for a in table.aggregates}, [*keys, ts])
        return _windowed(table, source)
    frame = frame.filter(pl.all_horizontal([pl.col(k).is_not_null() for k in keys]))
    if ts is None:
        # a static table: one row per entity (the last one in source order wins)
        return frame.unique(subset=keys, keep="last", maintain_order=True).sort(keys)
    known = (as_utc(pl.col(ts), frame.schema[ts]) + table.available_after).alias(FEATURE_TIME)
    frame = frame.with_columns(known).drop(ts).filter(pl.col(FEATURE_TIME).is_not_null())
    frame = frame.unique(subset=[*keys, FEATURE_TIME], keep="last", maintain_order=True)
    return frame.select(*keys, FEATURE_TIME, *[c for c in frame.columns if c not in {*keys, FEATURE_TIME}]).sort([FEATURE_TIME, *keys])


def _windowed(table: FeatureTable, source: pl.DataFrame) -> pl.DataFrame:
    """Running windowed aggregates at every instant they change.

    Each source row adds its value when it becomes known and removes it when it
    leaves the window; cumulative sums per entity over these deltas give the
    exact sliding-window sum and count at each change point.
    """
    keys = list(table.keys)
    ts = table.timestamp
    assert ts is not None
    base = source.select(
        *keys,
        (as_utc(pl.col(ts), source.schema[ts]) + table.available_after).alias(FEATURE_TIME),
        *[a.expr.cast(pl.Float64).alias(f"_v{i}") for i, a in enumerate(table.aggregates)],
    ).filter(pl.all_horizontal([pl.col(k).is_not_null() for k in [*keys, FEATURE_TIME]]))
    # work on a dense integer entity id: grouping and sorting on it is far cheaper than on string keys
    ents = base.select(keys).unique().sort(keys).with_row_index("_eid")
    base = base.join(ents, on=keys, how="inner", maintain_order="left").drop(keys)
    # rows known at the same instant enter (and later leave) together: aggregate them first
    n = len(table.aggregates)
    base = base.group_by(["_eid", FEATURE_TIME]).agg(
        *[pl.col(f"_v{i}").fill_null(0.0).sum().alias(f"_vs{i}") for i in range(n)],
        *[pl.col(f"_v{i}").is_not_null().sum().cast(pl.Float64).alias(f"_vc{i}") for i in range(n)],
    )
    zeros = {f"_s{j}": pl.lit(0.0) for j in range(n)} | {f"_c{j}": pl.lit(0.0) for j in range(n)}
    parts = []
    for i, a in enumerate(table.aggregates):
        for sign, shift in ((1.0, None), (-1.0, a.window)):
            cols = dict(zeros)
            cols[f"_s{i}"] = pl.col(f"_vs{i}") * sign
            cols[f"_c{i}"] = pl.col(f"_vc{i}") * sign
            when = pl.col(FEATURE_TIME) if shift is None else pl.col(FEATURE_TIME) + shift
            parts.append(base.select("_eid", when.alias(FEATURE_TIME), *[e.alias(k) for k, e in cols.items()]))
    deltas = pl.concat(parts).group_by(["_eid", FEATURE_TIME]).agg(pl.all().sum()).sort(["_eid", FEATURE_TIME])
    running = deltas.with_columns([pl.col(c).cum_sum().over("_eid") for c in deltas.columns if c.startswith(("_s", "_c"))])
    running = running.join(ents, on="_eid", how="left", maintain_order="left")
    outs: list[pl.Expr] = []
    for i, a in enumerate(table.aggregates):
        # counts are whole numbers, so round away float residue before testing for an empty window
        c = pl.col(f"_c{i}").round(0)
        s = pl.col(f"_s{i}")
        if a.function == "mean":
            outs.append(pl.when(c > 0).then(s / c).otherwise(None).alias(a.name))
        elif a.function == "sum":
            outs.append(pl.when(c > 0).then(s).otherwise(0.0).alias(a.name))
        else:
            outs.append(c.cast(pl.Int64).alias(a.name))
    # entity ids follow the sorted keys, so this order does not depend on the source's row order
    return running.sort([FEATURE_TIME, "_eid"]).select(*keys, FEATURE_TIME, *outs)


def add_request_features(fs: FeatureSet, frame: FrameT) -> FrameT:
    """Features computed from the event row itself (the same at training and serving time)."""
    ev = fs.require_events()
    _check_columns(fs.spec, "features.events.features", frame.collect_schema().names(), ev.features, [])
    return frame.with_columns([e.alias(n) for n, e in ev.features.items()])


def join_table(events: pl.DataFrame, event_time: str, table: FeatureTable, gold: pl.DataFrame, *, apply_ttl: bool = True) -> pl.DataFrame:
    """Attach one table's features to ``events`` (sorted by ``event_time``), point in time.

    The gold row used is the latest with ``feature_time <= t`` (``< t`` for
    aggregates); with ``apply_ttl`` rows older than the TTL give nulls. A
    ``_ft_TABLE`` column records the gold row's ``feature_time``.
    """
    keys = list(table.keys)
    feats = gold_features(table, gold.columns)
    if table.timestamp is None:
        return events.join(gold.select(*keys, *feats), on=keys, how="left", maintain_order="left")
    ft = f"_ft_{table.name}"
    right = gold.select(*keys, pl.col(FEATURE_TIME).alias(ft), *feats).sort(ft, maintain_order=True)
    return events.join_asof(
        right,
        left_on=event_time,
        right_on=ft,
        by=keys,
        strategy="backward",
        allow_exact_matches=table.inclusive,
        tolerance=table.ttl if apply_ttl else None,
        check_sortedness=False,
        coalesce=False,
    )


def join_point_in_time(fs: FeatureSet, events: pl.DataFrame, event_time: str, golds: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Attach every table's features to ``events`` as of each event's time (no value from after it)."""
    out = events.sort(event_time, maintain_order=True)
    for name, table in fs.tables.items():
        out = join_table(out, event_time, table, golds[name])
    return finalize(fs, out)


def mask_online(fs: FeatureSet, frame: FrameT, event_time: str, features: dict[str, list[str]]) -> FrameT:
    """Null out online values an offline as-of join would not have used for this event time.

    The online store holds each entity's value as of materialization, stamped with
    its ``feature_time`` (in ``_ft_TABLE``). A value from after the event, or older
    than the table's TTL, is not visible offline, so it is not visible online either.
    """
    t = pl.col(event_time)
    names = frame.collect_schema().names()
    exprs: list[pl.Expr] = []
    for name, table in fs.tables.items():
        ft = f"_ft_{name}"
        if table.timestamp is None or ft not in names:
            continue
        visible = pl.col(ft) <= t if table.inclusive else pl.col(ft) < t
        if table.ttl is not None:
            visible = visible & (t - pl.col(ft) <= table.ttl)
        exprs += [pl.when(visible).then(pl.col(c)).otherwise(None).alias(c) for c in features[name]]
    return frame.with_columns(exprs) if exprs else frame


def finalize(fs: FeatureSet, frame: FrameT) -> FrameT:
    """Rules shared by the offline and online paths: empty windows count 0; drop bookkeeping columns."""
    names = frame.collect_schema().names()
    fills = [pl.col(n).fill_null(0) for t in fs.tables.values() for n in t.zero_when_empty if n in names]
    out = frame.with_columns(fills) if fills else frame
    return out.drop([c for c in names if c.startswith("_ft_")])
