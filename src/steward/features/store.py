"""Build gold feature tables, training sets and the online store from one set of definitions.

* :func:`build_features` writes ``gold.TABLE`` (Delta, one commit per changed table).
* :func:`build_training_set` joins labelled events point-in-time with the gold tables;
  every input is pinned ``table@version``; ``pins`` rebuilds an identical frame.
* :func:`materialize` writes each entity's latest values to the online store.
* :func:`get_online_features` is what serving calls; it ends in the same
  :func:`~steward.features.compute.finalize` as the offline path.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from steward._primitives import to_utc
from steward.data.lake import TableRef
from steward.data.runs import record_input, run_inputs
from steward.errors import NotFound, SpecError, TableNotFound, ValidationFailed
from steward.features.compute import (
    UTC_US,
    add_request_features,
    as_utc,
    build_gold,
    finalize,
    gold_features,
    join_point_in_time,
    join_table,
    mask_online,
)
from steward.features.definitions import FeatureSet, FeatureTable
from steward.features.training_set import TrainingSet

if TYPE_CHECKING:
    from steward.backends.base import OnlineStore
    from steward.workspace import Workspace

__all__ = [
    "BuildResult",
    "MaterializeResult",
    "Pins",
    "build_features",
    "build_training_set",
    "feature_set",
    "get_online_features",
    "list_feature_tables",
    "materialize",
    "online_store",
]

logger = logging.getLogger(__name__)

META_NS = "steward:meta"
META_KEY = "features"
KEY_SEP = "|"

Pins = Mapping[str, int] | Iterable[TableRef | str]
"""Versions to read: ``{"silver.flights": 3, "gold.carrier_late": 2}`` or ``["silver.flights@3", ...]``."""


@dataclass
class _State:
    fs: FeatureSet
    meta_raw: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


_STATE: weakref.WeakKeyDictionary[Workspace, _State] = weakref.WeakKeyDictionary()


def _state(ws: Workspace) -> _State:
    st = _STATE.get(ws)
    if st is None or st.fs.spec is not ws.spec:
        st = _State(FeatureSet.from_spec(ws.spec))
        _STATE[ws] = st
    return st


def feature_set(ws: Workspace) -> FeatureSet:
    """The compiled feature definitions of a workspace (cached)."""
    return _state(ws).fs


def online_store(ws: Workspace) -> OnlineStore:
    """The workspace's online store (SQLite, or Redis by ``storage.online_store_url``), opened once by the workspace."""
    return ws.online_store


def _pin_map(pins: Pins | None) -> dict[str, int]:
    if pins is None:
        return {}
    if isinstance(pins, Mapping):
        return {str(TableRef.parse(str(k)).table): int(v) for k, v in pins.items()}
    out: dict[str, int] = {}
    for p in pins:
        ref = p if isinstance(p, TableRef) else TableRef.parse(str(p))
        if ref.version is None:
            raise ValidationFailed(f"pin {ref} has no version", hint="write pins as LAYER.NAME@VERSION", details={"errors": [str(ref)]})
        out[ref.table] = ref.version
    return out


def _resolve(ws: Workspace, ref: TableRef, pins: Mapping[str, int]) -> TableRef:
    if ref.version is None and ref.table in pins:
        ref = ref.at(pins[ref.table])
    return ws.lake.pin(ref)


# -- gold tables -------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    """What ``features build`` did for one table.

    Attributes:
        table: The gold table, pinned to the version now current.
        source: The source read, pinned.
        rows: Rows in the gold table.
        changed: False when the content was identical, so no commit was made.
        seconds: Wall time.
    """

    table: TableRef
    source: TableRef
    rows: int
    changed: bool
    seconds: float


def build_features(ws: Workspace, tables: Sequence[str] | None = None, *, pins: Pins | None = None) -> list[BuildResult]:
    """Compute gold feature tables from their sources and write the changed ones.

    Each table is one Delta commit (``gold.NAME``), recorded with the run's
    lineage (its pinned source as input). Re-running on unchanged sources
    changes nothing.

    Args:
        tables: Names to build; default every table in ``features.tables``.
        pins: Source versions to read (default: the latest).
    """
    fs = feature_set(ws)
    pin_map = _pin_map(pins)
    names = list(tables) if tables else list(fs.tables)
    run_id = f"features-build-{uuid.uuid4().hex[:12]}"
    results = []
    for name in names:
        table = fs.table(name)
        t0 = time.perf_counter()
        src = _resolve(ws, table.source, pin_map)
        gold = build_gold(ws.spec, table, ws.lake.read(src))
        version, changed = _write_gold(ws, table, gold, src, run_id)
        results.append(BuildResult(table.gold.at(version), src, gold.height, changed, time.perf_counter() - t0))
        logger.info("built %s@%d from %s: %d rows (%s)", table.gold, version, src, gold.height, "changed" if changed else "unchanged")
    return results


def _write_gold(ws: Workspace, table: FeatureTable, gold: pl.DataFrame, src: TableRef, run_id: str) -> tuple[int, bool]:
    lake = ws.lake
    ref = table.gold
    if lake.exists(ref):
        current = lake.read(ref)
        if current.schema == gold.schema and current.equals(gold):
            version = lake.version(ref)
            # the current version is also what this source version gives: record it, so freshness checks see it
            made_by = lake.written_by(ref.at(version))
            if made_by:
                _record_input(ws, made_by, src)
            return version, False
        if current.schema != gold.schema:
            # the definition changed: the new schema replaces the old one, still as one commit
            version = lake.write(ref, gold, mode="overwrite", replace_schema=True, run_id=run_id, operation="features.build")
            _record_input(ws, run_id, src)
            return version, True
    version = lake.write(ref, gold, mode="overwrite", run_id=run_id, operation="features.build")
    _record_input(ws, run_id, src)
    return version, True


def _record_input(ws: Workspace, run_id: str, src: TableRef) -> None:
    record_input(ws.metadata, run_id, str(src))


def _built_from(ws: Workspace, ref: TableRef) -> set[str]:
    """Source versions a gold version is known to have been computed from (by lineage)."""
    run_id = ws.lake.written_by(ref)
    if run_id is None:
        return set()
    return set(run_inputs(ws.metadata, run_id))


def _read_gold(ws: Workspace, table: FeatureTable, pins: Mapping[str, int], *, refresh: bool = True) -> tuple[TableRef, pl.DataFrame]:
    ref = table.gold
    if ref.table not in pins:
        if not ws.lake.exists(ref):
            logger.info("%s does not exist yet: building it", ref)
            build_features(ws, [table.name], pins=pins)
        elif refresh:
            src = _resolve(ws, table.source, pins)
            if str(src) not in _built_from(ws, ws.lake.pin(ref)):
                # new source data since the last build: features for new events must see it
                logger.info("%s is stale (not built from %s): rebuilding it", ref, src)
                build_features(ws, [table.name], pins=pins)
    try:
        pinned = _resolve(ws, ref, pins)
    except TableNotFound:
        raise TableNotFound(f"feature table {ref} does not exist", hint="run 'steward features build'") from None
    return pinned, ws.lake.read(pinned)


# -- training sets -----------------------------------------------------------------------


def build_training_set(
    ws: Workspace,
    *,
    events: TableRef | str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    pins: Pins | None = None,
    refresh: bool = True,
) -> TrainingSet:
    """Labelled events joined point-in-time with every feature table.

    For each event at time ``t``, a table's value is its latest row known at
    ``t`` (strictly before ``t`` for windowed aggregates); nothing from after the
    event is used. Missing or stale gold tables are built first (unless pinned).

    Args:
        ws: The workspace.
        events: Events table (default ``features.events.source``), optionally pinned.
        start: Keep events at or after this time (UTC when naive).
        end: Keep events strictly before this time.
        pins: Versions to read (``TrainingSet.data_versions`` of an earlier set rebuilds it identically).
        refresh: Rebuild an unpinned gold table first when it was not built from its
            source's current version (no commit when nothing changed).

    Returns:
        A :class:`TrainingSet` whose ``inputs`` pin every table read.
    """
    fs = feature_set(ws)
    ev = fs.require_events()
    pin_map = _pin_map(pins)
    ev_ref = events if isinstance(events, TableRef) else TableRef.parse(events) if events else ev.source
    ev_ref = _resolve(ws, ev_ref, pin_map)
    schema = ws.lake.scan(ev_ref).collect_schema()
    needed = _event_columns(fs, list(schema.names()))
    frame = ws.lake.read(ev_ref, columns=needed)
    frame = frame.with_columns(as_utc(pl.col(ev.timestamp), frame.schema[ev.timestamp]).alias(ev.timestamp))
    if start is not None:
        frame = frame.filter(pl.col(ev.timestamp) >= to_utc(start))
    if end is not None:
        frame = frame.filter(pl.col(ev.timestamp) < to_utc(end))
    if ev.filter is not None:
        frame = frame.filter(ev.filter)
    # rows whose label is unknown cannot teach anything
    frame = frame.with_columns(ev.label_expr.alias(ev.label)).filter(pl.col(ev.label).is_not_null())
    if frame.schema[ev.label] == pl.Boolean:
        # a condition (e.g. arr_delay >= 15) becomes 0/1; any other label keeps its own type, since the
        # model's task types it (a narrowing cast would break a price or a string class)
        frame = frame.with_columns(pl.col(ev.label).cast(pl.Int8))
    frame = add_request_features(fs, frame.sort([ev.timestamp, *ev.keys], maintain_order=True))
    golds: dict[str, pl.DataFrame] = {}
    inputs = [ev_ref]
    table_feats: list[str] = []
    for name, table in fs.tables.items():
        ref, gold = _read_gold(ws, table, pin_map, refresh=refresh)
        golds[name] = gold
        inputs.append(ref)
        table_feats += gold_features(table, gold.columns)
    joined = join_point_in_time(fs, frame, ev.timestamp, golds)
    feature_names = [*ev.features, *table_feats]
    entity_keys = list(dict.fromkeys([*ev.keys, *fs.entity_keys]))
    cols = list(dict.fromkeys([*entity_keys, ev.timestamp, *feature_names, ev.label]))
    return TrainingSet(
        frame=joined.select(cols),
        inputs=inputs,
        feature_names=feature_names,
        label=ev.label,
        event_time=ev.timestamp,
        entity_keys=entity_keys,
        categorical=[c for c in fs.categorical if c in feature_names],
    )


def _event_columns(fs: FeatureSet, available: list[str]) -> list[str]:
    ev = fs.require_events()
    need = [ev.timestamp, *ev.keys, *fs.entity_keys]
    for e in [ev.label_expr, *ev.features.values(), *([ev.filter] if ev.filter is not None else [])]:
        need += e.meta.root_names()
    need = list(dict.fromkeys(need))
    missing = [c for c in need if c not in available]
    if missing:
        raise SpecError(
            f"{fs.spec.spec_path}: key 'features.events': column(s) {', '.join(missing)} not in {ev.source}",
            code="spec.feature_column",
            hint=f"events need the timestamp, keys and every entity key; columns: {', '.join(available)}",
        )
    return need


# -- online store ------------------------------------------------------------------------


@dataclass(frozen=True)
class MaterializeResult:
    """What ``features materialize`` wrote.

    Attributes:
        as_of: The instant the values hold at.
        store: Online store URL.
        entities: Table name → number of entities written.
        inputs: Gold tables read, pinned.
    """

    as_of: datetime
    store: str
    entities: dict[str, int]
    inputs: list[TableRef]


def materialize(ws: Workspace, *, as_of: datetime | None = None, pins: Pins | None = None, refresh: bool = True) -> MaterializeResult:
    """Write each entity's feature values as of ``as_of`` to the online store.

    The value stored is exactly what the point-in-time join gives an event at
    ``as_of`` (without the TTL, which is applied at read time against the
    request's own time), stamped with its ``feature_time``.

    Args:
        as_of: Default: the latest event time in the events source.
        pins: Versions to read (default: latest; missing gold tables are built).
        refresh: Rebuild unpinned gold tables that are stale against their sources first.
    """
    fs = feature_set(ws)
    ev = fs.require_events()
    pin_map = _pin_map(pins)
    store = online_store(ws)
    ev_ref = _resolve(ws, ev.source, pin_map)
    scan = ws.lake.scan(ev_ref)
    schema = scan.collect_schema()
    if as_of is None:
        latest = scan.select(as_utc(pl.col(ev.timestamp), schema[ev.timestamp]).max()).collect().item()
        as_of = latest if latest is not None else datetime.now(UTC)
    as_of = to_utc(as_of)
    _event_columns(fs, list(schema.names()))  # fail early on a bad events definition
    request_cols = [ev.timestamp, *fs.entity_keys, *(c for e in ev.features.values() for c in e.meta.root_names())]
    meta: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "events_schema": {c: _dtype_name(schema[c]) for c in dict.fromkeys(request_cols)},
        "entity_keys": fs.entity_keys,
        "tables": {},
        "feature_names": list(ev.features),
    }
    counts: dict[str, int] = {}
    inputs: list[TableRef] = []
    for name, table in fs.tables.items():
        ref, gold = _read_gold(ws, table, pin_map, refresh=refresh)
        inputs.append(ref)
        feats = gold_features(table, gold.columns)
        keys = list(table.keys)
        if table.timestamp is None:
            latest_rows = gold.with_columns(pl.lit(None, dtype=pl.Int64).alias("_ft_us"))
        else:
            ents = gold.select(keys).unique(maintain_order=True).with_columns(pl.lit(as_of).cast(UTC_US).alias("_as_of"))
            latest_rows = join_table(ents, "_as_of", table, gold, apply_ttl=False)
            latest_rows = latest_rows.with_columns(pl.col(f"_ft_{name}").dt.epoch("us").alias("_ft_us"))
            latest_rows = latest_rows.filter(pl.col("_ft_us").is_not_null())
        items: dict[str, str] = {}
        for row in latest_rows.select(*keys, "_ft_us", *feats).iter_rows():
            key = KEY_SEP.join(str(v) for v in row[: len(keys)])
            value = {"_ft": row[len(keys)], **{f: _jsonable(v) for f, v in zip(feats, row[len(keys) + 1 :], strict=True)}}
            items[key] = json.dumps(value, separators=(",", ":"))
        counts[name] = store.replace(name, items)
        meta["tables"][name] = {"keys": keys, "features": {f: _dtype_name(gold.schema[f]) for f in feats}, "version": ref.version}
        meta["feature_names"] += feats
    store.replace(META_NS, {META_KEY: json.dumps(meta)})
    logger.info("materialized %s as of %s to %s", counts, as_of.isoformat(), store.url)
    return MaterializeResult(as_of, store.url, counts, inputs)


def get_online_features(ws: Workspace, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The full feature vector for each request row, computed exactly as offline.

    Rows carry the entity keys (``carrier``, ``origin``, ``dest``, ``tailnum``),
    the event time (``time_hour``; default now) and the request-time columns.
    One online-store round trip serves every row and table.

    Returns:
        One dict per row, keys in ``feature_names`` order.

    Raises:
        ValidationFailed: a row misses a needed column or has a value of the wrong type.
        NotFound: nothing has been materialized yet.
    """
    st = _state(ws)
    fs = st.fs
    ev = fs.require_events()
    if not rows:
        return []
    store = online_store(ws)
    requests: dict[str, list[str]] = {META_NS: [META_KEY]}
    for name, table in fs.tables.items():
        requests[name] = [KEY_SEP.join(str(r.get(k)) for k in table.keys) for r in rows]
    found = store.read(requests)
    raw = found[META_NS][0]
    if raw is None:
        raise NotFound("the online store is empty", code="features.not_materialized", hint="run 'steward features materialize'")
    if raw != st.meta_raw:
        st.meta, st.meta_raw = json.loads(raw), raw
    meta = st.meta
    data, schema = _request_columns(meta, rows, ev.timestamp)
    table_features: dict[str, list[str]] = {}
    ft_casts: list[pl.Expr] = []
    for name, table in fs.tables.items():
        tmeta = meta["tables"].get(name)
        if tmeta is None:
            raise NotFound(
                f"feature table '{name}' is not in the online store",
                code="features.not_materialized",
                hint="run 'steward features materialize'",
            )
        values = [None if v is None else json.loads(v) for v in found[name]]
        # a null key never joins offline, so it never matches online either
        for i, r in enumerate(rows):
            if any(r.get(k) is None for k in table.keys):
                values[i] = None
        table_features[name] = list(tmeta["features"])
        if table.timestamp is not None:
            ft = f"_ft_{name}"
            data[ft], schema[ft] = [v["_ft"] if v else None for v in values], pl.Int64()
            ft_casts.append(pl.col(ft).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
        for f, dt in tmeta["features"].items():
            data[f], schema[f] = [v.get(f) if v else None for v in values], _dtype(dt)
    # one frame, one lazy plan, one collect: the same expressions as offline at a fraction of the per-call cost
    lf = _frame(data, schema).lazy().with_columns(ft_casts)
    lf = finalize(fs, mask_online(fs, add_request_features(fs, lf), ev.timestamp, table_features))
    return lf.select(meta["feature_names"]).collect().to_dicts()


def _request_columns(
    meta: dict[str, Any], rows: Sequence[Mapping[str, Any]], event_time: str
) -> tuple[dict[str, list[Any]], dict[str, pl.DataType]]:
    schema: dict[str, str] = meta["events_schema"]
    entity_keys = set(meta["entity_keys"])
    errors = []
    data: dict[str, list[Any]] = {}
    dtypes: dict[str, pl.DataType] = {}
    for c, dt in schema.items():
        vals = [r.get(c) for r in rows]
        if c == event_time:
            now = datetime.now(UTC)
            try:
                data[c] = [now if v is None else to_utc(v) for v in vals]
            except (TypeError, ValueError, AttributeError) as exc:
                errors.append(f"{c}: not a timestamp ({exc})")
            dtypes[c] = UTC_US
            continue
        if c not in entity_keys and all(c not in r for r in rows):
            # an absent entity key just finds nothing (like a null key offline); request columns are required
            errors.append(f"{c}: missing")
            continue
        data[c], dtypes[c] = vals, _dtype(dt)
    if errors:
        raise ValidationFailed(f"bad feature request: {'; '.join(errors)}", details={"errors": errors})
    return data, dtypes


def _frame(data: dict[str, list[Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    try:
        return pl.DataFrame(data, schema=schema, strict=True)
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        pass
    # slow path, only for a bad request: find every column that does not fit its type
    errors = []
    for c, vals in data.items():
        try:
            pl.Series(c, vals, dtype=schema[c], strict=True)
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            errors.append(f"{c}: expected {schema[c]} ({type(exc).__name__})")
    raise ValidationFailed(f"bad feature request: {'; '.join(errors) or 'values do not fit their types'}", details={"errors": errors})


_DTYPES: dict[str, pl.DataType] = {
    "Int8": pl.Int8(),
    "Int16": pl.Int16(),
    "Int32": pl.Int32(),
    "Int64": pl.Int64(),
    "UInt8": pl.UInt8(),
    "UInt16": pl.UInt16(),
    "UInt32": pl.UInt32(),
    "UInt64": pl.UInt64(),
    "Float32": pl.Float32(),
    "Float64": pl.Float64(),
    "Boolean": pl.Boolean(),
    "String": pl.String(),
    "Datetime": UTC_US,
    "Date": pl.Date(),
}


def _dtype_name(dtype: pl.DataType) -> str:
    name = dtype.base_type().__name__
    return name if name in _DTYPES else "String"


def _dtype(name: str) -> pl.DataType:
    return _DTYPES.get(name, pl.String())


def _jsonable(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


# -- listing -----------------------------------------------------------------------------


def list_feature_tables(ws: Workspace) -> list[dict[str, Any]]:
    """Every feature table: entity, keys, kind, features, source, gold version and rows, online entities."""
    fs = feature_set(ws)
    out = []
    for name, table in fs.tables.items():
        info: dict[str, Any] = {
            "name": name,
            "entity": table.entity,
            "keys": list(table.keys),
            "kind": table.kind,
            "source": str(table.source),
            "features": table.declared_features,
            "gold_version": None,
            "rows": None,
        }
        if ws.lake.exists(table.gold):
            ref = ws.lake.pin(table.gold)
            info["gold_version"] = ref.version
            info["rows"] = ws.lake.count(ref)
            if info["features"] is None:
                info["features"] = gold_features(table, list(ws.lake.scan(ref).collect_schema().names()))
        out.append(info)
    return out
