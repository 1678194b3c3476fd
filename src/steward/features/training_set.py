"""The pinned training set handed from the features stage to training."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from steward.data.lake import TableRef

__all__ = ["TrainingSet"]


@dataclass
class TrainingSet:
    """Labelled events joined point-in-time with their features.

    Attributes:
        frame: One row per labelled event: entity keys, event time, feature columns, label.
        inputs: Every lake table read to build it, pinned (``table@version``).
        feature_names: Feature columns, in model input order.
        label: Label column name.
        event_time: Event timestamp column name (used for the time split).
        entity_keys: Entity key columns (kept for slicing and serving lookups).
        categorical: Feature columns that are categorical.
    """

    frame: pl.DataFrame
    inputs: list[TableRef]
    feature_names: list[str]
    label: str
    event_time: str
    entity_keys: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)

    @property
    def data_versions(self) -> dict[str, int]:
        """``{"silver.flights": 12, ...}``: the data half of the reproducibility triple."""
        return {r.table: int(r.version) for r in self.inputs if r.version is not None}
