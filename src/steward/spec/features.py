"""The ``features:`` section: entities, gold feature tables and the labelled events training sets come from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from steward._primitives import DurationText
from steward.spec._base import _check_source, _Strict

__all__ = ["FeatureAggregateSpec", "FeatureEntitySpec", "FeatureEventsSpec", "FeatureLabelSpec", "FeatureTableSpec", "FeaturesSpec"]


class FeatureEntitySpec(_Strict):
    """An entity that features describe (a carrier, a route, a plane) and its join keys.

    Attributes:
        keys: Columns that identify one entity; the same names in sources and events.
        description: Free text for ``steward features list``.
    """

    keys: list[str] = Field(min_length=1)
    description: str = ""


class FeatureAggregateSpec(_Strict):
    """A windowed aggregate over an entity's source rows, as of the event time.

    Attributes:
        name: Feature name.
        expr: SQL expression evaluated per source row (``arr_delay >= 15``).
        function: ``mean``, ``sum`` or ``count`` (of non-null values of ``expr``).
        window: Length of the window that ends strictly before the event (``7d``).
    """

    name: str
    expr: str
    function: Literal["mean", "sum", "count"] = "mean"
    window: DurationText


class FeatureTableSpec(_Strict):
    """One gold feature table: an entity, a source and either columns, a transform or aggregates.

    Attributes:
        entity: Name of the entity (in ``features.entities``) whose keys join this table.
        source: Lake table the features come from (``silver.weather``).
        timestamp: Source column holding each row's time; omit for static tables (planes).
        available_after: Delay after ``timestamp`` before a row's values are known
            (a flight's arrival is known only after it lands); rows are used only once known.
        ttl: Oldest value a point-in-time lookup accepts (older gives null); default no limit.
        columns: Feature name → SQL expression over source columns (``seats_per_engine: seats / engines``).
        transform: Dotted path of a Python function ``(polars.DataFrame) -> polars.DataFrame``
            returning entity keys, ``timestamp`` (if set) and feature columns.
        aggregates: Windowed aggregates (requires ``timestamp``).
        description: Free text.
    """

    entity: str
    source: str
    timestamp: str | None = None
    available_after: DurationText = "0s"
    ttl: DurationText | None = None
    columns: dict[str, str] | None = None
    transform: str | None = None
    aggregates: list[FeatureAggregateSpec] | None = None
    description: str = ""

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        return _check_source(value)

    @model_validator(mode="after")
    def _one_kind(self) -> FeatureTableSpec:
        kinds = [k for k in ("columns", "transform", "aggregates") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of 'columns', 'transform' or 'aggregates' (got {', '.join(kinds) or 'none'})")
        if self.aggregates and not self.timestamp:
            raise ValueError("'aggregates' need 'timestamp' (the source column the windows are measured on)")
        if self.transform and "." not in self.transform:
            raise ValueError(f"'transform' must be a dotted path like 'my_pkg.features.weather' (got {self.transform!r})")
        return self


class FeatureLabelSpec(_Strict):
    """The label of each event: a name and an SQL expression (``arr_delay >= 15``)."""

    name: str
    expr: str


class FeatureEventsSpec(_Strict):
    """Labelled events that training sets are built from.

    Attributes:
        source: Lake table of events (``silver.flights``).
        timestamp: Event time column; every feature is looked up as of this time.
        label: Label name and expression (rows where it is null are left out).
        keys: Columns that identify one event (kept in the training set).
        features: Request-time features taken from the event row itself: a list of
            columns, or name → SQL expression. Serving computes them the same way.
        filter: Optional SQL predicate keeping only some events.
    """

    source: str
    timestamp: str
    label: FeatureLabelSpec
    keys: list[str] = Field(default_factory=list)
    features: list[str] | dict[str, str] = Field(default_factory=dict)
    filter: str | None = None

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        return _check_source(value)


class FeaturesSpec(_Strict):
    """Feature definitions: one place for training (point-in-time joins) and serving (online store).

    Attributes:
        entities: Entity name → its join keys.
        tables: Gold feature table name → its definition (written to ``gold.NAME``).
        events: The labelled events training sets are built from.
        categorical: Feature names the model should treat as categorical.
    """

    entities: dict[str, FeatureEntitySpec] = Field(default_factory=dict)
    tables: dict[str, FeatureTableSpec] = Field(default_factory=dict)
    events: FeatureEventsSpec | None = None
    categorical: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> FeaturesSpec:
        seen: dict[str, str] = {}
        if self.events is not None:
            names = self.events.features if isinstance(self.events.features, list) else list(self.events.features)
            for n in names:
                seen[n] = "events.features"
        for tname, table in self.tables.items():
            if not tname or not all(c.isalnum() or c == "_" for c in tname):
                raise ValueError(f"tables.{tname}: a table name uses only letters, digits and '_'")
            if table.entity not in self.entities:
                known = ", ".join(sorted(self.entities)) or "none"
                raise ValueError(
                    f"tables.{tname}.entity: unknown entity '{table.entity}' (declare it under features.entities; known: {known})"
                )
            names = list(table.columns or {}) + [a.name for a in table.aggregates or []]
            for n in names:
                if n in seen:
                    raise ValueError(f"tables.{tname}: feature '{n}' is also defined in {seen[n]}; feature names must be unique")
                seen[n] = f"tables.{tname}"
        for c in self.categorical:
            if c not in seen and not any(t.transform for t in self.tables.values()):
                raise ValueError(f"categorical: '{c}' is not a feature (known: {', '.join(seen) or 'none'})")
        return self
