"""From labelled rows to model matrices: the time split, the feature encoding and the label array.

The encoding is part of the model: categorical columns become integer codes
over the training vocabulary (unknown or null → NaN), numeric columns become
float64. It is stored in the logged model's metadata, so serving encodes a
request exactly the way training did (:func:`encode`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import polars as pl

from steward.errors import ValidationFailed
from steward.spec import SplitSpec

__all__ = ["FeatureEncoding", "encode", "fit_encoding", "label_array", "sort_for_training", "split_by_time"]

logger = logging.getLogger(__name__)


@dataclass
class FeatureEncoding:
    """How raw feature columns become the model's float matrix.

    Attributes:
        features: Model input columns, in order.
        categorical: Categorical column → its training vocabulary (code = index).
    """

    features: list[str]
    categorical: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the model's metadata)."""
        return {"features": list(self.features), "categorical": {k: list(v) for k, v in self.categorical.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureEncoding:
        """Inverse of :meth:`to_dict`."""
        return cls(
            features=list(data["features"]), categorical={str(k): [str(x) for x in v] for k, v in data.get("categorical", {}).items()}
        )


def sort_for_training(frame: pl.DataFrame, event_time: str, entity_keys: list[str]) -> pl.DataFrame:
    """Order rows by event time then entity keys (stable), so a rebuilt set trains identically."""
    keys = [event_time, *[k for k in entity_keys if k in frame.columns and k != event_time]]
    return frame.sort(keys, maintain_order=True, nulls_last=True)


def _cut_literal(value: str, dtype: pl.DataType) -> Any:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            f"split.validation_from {value!r} is not an ISO date or timestamp",
            hint="write it like 2013-10-01 or 2013-10-01T00:00:00Z",
            details={"errors": ["model.split.validation_from"]},
        ) from None
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone and parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        elif not dtype.time_zone and parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        return pl.lit(parsed).cast(dtype)
    if dtype == pl.Date:
        return pl.lit(parsed.date() if isinstance(parsed, datetime) else parsed, dtype=pl.Date)
    return pl.lit(value).cast(dtype)


def split_by_time(frame: pl.DataFrame, event_time: str, split: SplitSpec) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """Split into (train, validation, cut): train has every event before ``cut``, validation the rest.

    ``split.validation_from`` fixes the cut; otherwise it is the event time at the
    ``1 - validation_fraction`` quantile, so no timestamp lands on both sides.

    Raises:
        ValidationFailed: one side of the split would be empty.
    """
    if event_time not in frame.columns:
        raise ValidationFailed(f"event time column {event_time!r} is not in the training set", details={"errors": [event_time]})
    col = frame[event_time]
    if split.validation_from:
        cut_expr = _cut_literal(split.validation_from, col.dtype)
        cut_value: Any = frame.select(cut_expr.alias("c"))["c"][0]
    else:
        ordered = col.drop_nulls().sort()
        if ordered.len() == 0:
            raise ValidationFailed("the training set has no event times", details={"errors": [event_time]})
        idx = min(int(ordered.len() * (1 - split.validation_fraction)), ordered.len() - 1)
        cut_value = ordered[idx]
        cut_expr = pl.lit(cut_value, dtype=col.dtype)
    train = frame.filter(pl.col(event_time) < cut_expr)
    valid = frame.filter(pl.col(event_time) >= cut_expr)
    cut = cut_value.isoformat() if isinstance(cut_value, datetime | date) else str(cut_value)
    if train.height == 0 or valid.height == 0:
        raise ValidationFailed(
            f"the time split at {cut} leaves {train.height} training and {valid.height} validation rows",
            hint="move model.split.validation_from inside the data's time range, or use validation_fraction",
            details={"errors": ["model.split"]},
        )
    return train, valid, cut


def fit_encoding(frame: pl.DataFrame, features: list[str], categorical: list[str]) -> FeatureEncoding:
    """Learn the vocabulary of each categorical feature from the training rows."""
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ValidationFailed(f"feature columns missing from the training set: {', '.join(missing)}", details={"errors": missing})
    cats: dict[str, list[str]] = {}
    for name in features:
        dtype = frame[name].dtype
        if name in categorical or dtype in (pl.Utf8, pl.Categorical) or isinstance(dtype, pl.Enum):
            values = frame[name].cast(pl.Utf8).drop_nulls().unique().sort().to_list()
            cats[name] = [str(v) for v in values]
    return FeatureEncoding(features=list(features), categorical=cats)


def encode(frame: pl.DataFrame | pd.DataFrame, encoding: FeatureEncoding) -> pd.DataFrame:
    """The model's float64 input matrix for ``frame`` (columns in ``encoding.features`` order).

    Raises:
        ValidationFailed: a feature column is missing or a numeric column is not numeric.
    """
    df = pl.from_pandas(frame) if isinstance(frame, pd.DataFrame) else frame
    missing = [f for f in encoding.features if f not in df.columns]
    if missing:
        raise ValidationFailed(f"feature columns missing: {', '.join(missing)}", details={"errors": missing})
    exprs: list[pl.Expr] = []
    for name in encoding.features:
        if name in encoding.categorical:
            vocab = encoding.categorical[name]
            mapping = pl.DataFrame({"__v": vocab, "__c": list(range(len(vocab)))}, schema={"__v": pl.Utf8, "__c": pl.Float64})
            exprs.append(
                pl.col(name).cast(pl.Utf8).replace_strict(mapping["__v"], mapping["__c"], default=None, return_dtype=pl.Float64).alias(name)
            )
        else:
            dtype = df[name].dtype
            if not (dtype.is_numeric() or dtype == pl.Boolean or dtype == pl.Null):
                raise ValidationFailed(
                    f"feature {name!r} has type {dtype} but is not declared categorical",
                    hint="list it under the training set's categorical columns",
                    details={"errors": [name]},
                )
            exprs.append(pl.col(name).cast(pl.Float64).alias(name))
    out = df.select(exprs).to_pandas()
    return out.astype("float64")


def label_array(frame: pl.DataFrame, label: str) -> np.ndarray:
    """The label column as the integer array estimators and metrics take (binary classification: 0/1).

    Raises:
        ValidationFailed: the label has nulls.
    """
    y = frame[label].cast(pl.Int64).to_numpy()
    if np.isnan(y.astype("float64")).any():
        raise ValidationFailed(f"label {label!r} has nulls", details={"errors": [label]})
    return y.astype(int)
