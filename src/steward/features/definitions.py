"""Feature definitions from ``steward.yaml``, compiled once into Polars expressions.

The spec (``features:``) is validated structurally by :mod:`steward.spec`; this
module parses the SQL expressions, resolves durations and ``transform`` paths,
and raises :class:`~steward.errors.SpecError` naming the key when something is
wrong. Offline (training sets) and online (serving) both use the compiled
:class:`FeatureSet`, so they cannot read the definitions differently.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import polars as pl

from steward._primitives import parse_duration
from steward.data.lake import TableRef
from steward.errors import SpecError
from steward.spec import FeatureTableSpec, Spec

__all__ = ["FEATURE_TIME", "Aggregate", "EventsDef", "FeatureSet", "FeatureTable"]

logger = logging.getLogger(__name__)

FEATURE_TIME = "feature_time"
"""Gold-table column: the instant from which a row's values hold (after ``available_after``)."""

Transform = Callable[[pl.DataFrame], pl.DataFrame]


@dataclass(frozen=True)
class Aggregate:
    """One windowed aggregate, compiled."""

    name: str
    expr: pl.Expr
    function: Literal["mean", "sum", "count"]
    window: timedelta


@dataclass(frozen=True)
class FeatureTable:
    """One gold feature table, compiled.

    Attributes:
        inclusive: Whether a row stamped exactly at the event time may be used.
            Column tables: yes (the weather observed at the scheduled hour).
            Aggregates: no, their windows end strictly before the event.
    """

    name: str
    entity: str
    keys: tuple[str, ...]
    source: TableRef
    timestamp: str | None
    available_after: timedelta
    ttl: timedelta | None
    kind: Literal["columns", "transform", "aggregates"]
    columns: dict[str, pl.Expr] = field(default_factory=dict)
    transform: str | None = None
    aggregates: tuple[Aggregate, ...] = ()

    @property
    def gold(self) -> TableRef:
        """Where the built table lives: ``gold.NAME``."""
        return TableRef("gold", self.name)

    @property
    def inclusive(self) -> bool:
        """Whether a row stamped exactly at the event time is visible to it."""
        return self.kind != "aggregates"

    @property
    def declared_features(self) -> list[str] | None:
        """Feature names known from the spec (None for a transform: they come from its output)."""
        if self.kind == "columns":
            return list(self.columns)
        if self.kind == "aggregates":
            return [a.name for a in self.aggregates]
        return None

    @property
    def zero_when_empty(self) -> list[str]:
        """Aggregates whose value over an empty window is 0 (count, sum) rather than null (mean)."""
        return [a.name for a in self.aggregates if a.function in ("count", "sum")]

    def load_transform(self, spec: Spec) -> Transform:
        """Import the ``transform`` function (the project directory is importable too)."""
        assert self.transform is not None
        module, _, attr = self.transform.rpartition(".")
        base = str(spec.base_dir)
        added = base not in sys.path
        if added:
            sys.path.insert(0, base)
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise SpecError(
                f"{spec.spec_path}: key 'features.tables.{self.name}.transform': cannot import {self.transform!r}: {exc}",
                hint="use a dotted path MODULE.FUNCTION importable from the project directory or the environment",
            ) from None
        finally:
            if added:
                sys.path.remove(base)
        if not callable(fn):
            raise SpecError(f"{spec.spec_path}: key 'features.tables.{self.name}.transform': {self.transform!r} is not a function")
        result: Transform = fn
        return result


@dataclass(frozen=True)
class EventsDef:
    """Labelled events, compiled."""

    source: TableRef
    timestamp: str
    label: str
    label_expr: pl.Expr
    keys: tuple[str, ...]
    features: dict[str, pl.Expr]
    filter: pl.Expr | None


@dataclass(frozen=True)
class FeatureSet:
    """Every feature definition of a project, compiled from ``steward.yaml``.

    Attributes:
        tables: Feature tables in spec order.
        events: The labelled events (None when the spec declares none).
        categorical: Feature names to treat as categorical.
    """

    spec: Spec
    tables: dict[str, FeatureTable]
    events: EventsDef | None
    categorical: tuple[str, ...]

    @classmethod
    def from_spec(cls, spec: Spec) -> FeatureSet:
        """Compile ``spec.features``; raises :class:`SpecError` naming the bad key."""
        fspec = spec.features
        tables = {name: _compile_table(spec, name, t) for name, t in fspec.tables.items()}
        events = None
        if fspec.events is not None:
            ev = fspec.events
            feats: dict[str, pl.Expr]
            if isinstance(ev.features, list):
                feats = {c: pl.col(c) for c in ev.features}
            else:
                feats = {n: _expr(spec, f"features.events.features.{n}", e) for n, e in ev.features.items()}
            events = EventsDef(
                source=TableRef.parse(ev.source),
                timestamp=ev.timestamp,
                label=ev.label.name,
                label_expr=_expr(spec, "features.events.label.expr", ev.label.expr),
                keys=tuple(ev.keys),
                features=feats,
                filter=_expr(spec, "features.events.filter", ev.filter) if ev.filter else None,
            )
        return cls(spec=spec, tables=tables, events=events, categorical=tuple(fspec.categorical))

    def require_events(self) -> EventsDef:
        """The events definition, or a SpecError saying how to add one."""
        if self.events is None:
            raise SpecError(
                f"{self.spec.spec_path}: no 'features.events' section",
                code="spec.features_events",
                hint="declare features.events: {source: silver.flights, timestamp: time_hour, label: {name: late, expr: 'arr_delay >= 15'}}",
            )
        return self.events

    def table(self, name: str) -> FeatureTable:
        """A feature table by name, or a SpecError naming the known ones."""
        if name not in self.tables:
            raise SpecError(
                f"{self.spec.spec_path}: feature table '{name}' is not declared",
                code="spec.unknown_feature_table",
                hint=f"known: {', '.join(self.tables) or 'none'}",
            )
        return self.tables[name]

    @property
    def entity_keys(self) -> list[str]:
        """Every join key used by a table, in first-use order."""
        return list(dict.fromkeys(k for t in self.tables.values() for k in t.keys))


def _expr(spec: Spec, key: str, text: str) -> pl.Expr:
    try:
        return pl.sql_expr(text)
    except Exception as exc:  # polars raises several SQL error types
        raise SpecError(
            f"{spec.spec_path}: key '{key}': cannot parse SQL expression {text!r}: {exc}",
            code="spec.feature_expr",
            hint="write an SQL expression over source columns, e.g. 'arr_delay >= 15' or '2013 - year'",
        ) from None


def _compile_table(spec: Spec, name: str, t: FeatureTableSpec) -> FeatureTable:
    where = f"features.tables.{name}"
    keys = tuple(spec.features.entities[t.entity].keys)
    reserved = {FEATURE_TIME, *keys}
    names = list(t.columns or {}) + [a.name for a in t.aggregates or []]
    for n in names:
        if n in reserved:
            raise SpecError(f"{spec.spec_path}: key '{where}': feature name '{n}' clashes with a key or '{FEATURE_TIME}'", hint="rename it")
    kind: Literal["columns", "transform", "aggregates"] = "columns" if t.columns else "transform" if t.transform else "aggregates"
    return FeatureTable(
        name=name,
        entity=t.entity,
        keys=keys,
        source=TableRef.parse(t.source),
        timestamp=t.timestamp,
        available_after=parse_duration(t.available_after),
        ttl=parse_duration(t.ttl) if t.ttl else None,
        kind=kind,
        columns={n: _expr(spec, f"{where}.columns.{n}", e) for n, e in (t.columns or {}).items()},
        transform=t.transform,
        aggregates=tuple(
            Aggregate(a.name, _expr(spec, f"{where}.aggregates.{i}.expr", a.expr), a.function, parse_duration(a.window))
            for i, a in enumerate(t.aggregates or [])
        ),
    )
