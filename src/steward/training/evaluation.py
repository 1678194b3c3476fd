"""From a training set to the matrices a model is fitted on, and a fitted model to its validation scores.

:func:`prepare` sorts and splits the set by time, learns the feature encoding on the
training rows and builds both sides' matrices; :func:`evaluate` scores a fitted model on
both sides: metrics overall and per slice, the fairness gap, and the hash of the
validation predictions (the reproducibility check).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import polars as pl

from steward.errors import ValidationFailed
from steward.modeling import (
    FeatureEncoding,
    compute_metrics,
    encode,
    fairness_report,
    fit_encoding,
    label_array,
    predict_proba,
    prediction_hash,
    slice_metrics,
    sort_for_training,
    split_by_time,
)

if TYPE_CHECKING:
    from steward.features.training_set import TrainingSet
    from steward.spec import ModelSpec, SplitSpec

__all__ = ["Evaluation", "PreparedData", "evaluate", "prepare"]

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """A training set split by time and encoded: what fitting, searching and evaluating read.

    Attributes:
        features: Model input columns, in order.
        categorical: The set's categorical columns that are features.
        cut: The first validation event time (ISO).
    """

    features: list[str]
    categorical: list[str]
    encoding: FeatureEncoding
    train_df: pl.DataFrame
    valid_df: pl.DataFrame
    cut: str
    x_train: pd.DataFrame
    y_train: np.ndarray
    x_valid: pd.DataFrame
    y_valid: np.ndarray

    @property
    def cat_features(self) -> list[str]:
        """The encoded categorical features (those with a vocabulary)."""
        return list(self.encoding.categorical)

    @property
    def rows(self) -> dict[str, int]:
        """``{"train": n, "validation": n}``."""
        return {"train": len(self.x_train), "validation": len(self.x_valid)}


def prepare(training_set: TrainingSet, split: SplitSpec) -> PreparedData:
    """Sort, split by time, fit the encoding on the training rows and build both sides' matrices.

    Raises:
        ValidationFailed: a split side is empty, a label is null, or the training rows hold a single class.
    """
    features = list(training_set.feature_names)
    categorical = [c for c in training_set.categorical if c in features]
    frame = sort_for_training(training_set.frame, training_set.event_time, training_set.entity_keys)
    train_df, valid_df, cut = split_by_time(frame, training_set.event_time, split)
    encoding = fit_encoding(train_df, features, categorical)
    x_train, y_train = encode(train_df, encoding), label_array(train_df, training_set.label)
    x_valid, y_valid = encode(valid_df, encoding), label_array(valid_df, training_set.label)
    if len(np.unique(y_train)) < 2:
        raise ValidationFailed("the training rows hold a single class", hint="widen the training period", details={"errors": ["label"]})
    return PreparedData(features, categorical, encoding, train_df, valid_df, cut, x_train, y_train, x_valid, y_valid)


@dataclass
class Evaluation:
    """A fitted model's scores on both sides of the split.

    Attributes:
        overall: Validation metrics overall.
        train: Training metrics overall.
        slices: ``{column: {group: {"n", "positives", metric...}}}`` on the validation rows.
        fairness: The fairness report (largest gap between groups), or None.
        prediction_hash: sha256 of the validation predictions.
        p_valid: Validation predictions.
        p_train: Training predictions (the reference profile's prediction column).
    """

    overall: dict[str, float | None]
    train: dict[str, float | None]
    slices: dict[str, dict[str, dict[str, Any]]]
    fairness: dict[str, Any] | None
    prediction_hash: str
    p_valid: np.ndarray
    p_train: np.ndarray


def evaluate(ms: ModelSpec, model: Any, data: PreparedData) -> Evaluation:
    """Score ``model`` on both sides: metrics overall, per slice of ``ms.slices``, and the fairness gap."""
    p_valid = predict_proba(model, data.x_valid)
    p_train = predict_proba(model, data.x_train)
    overall = compute_metrics(data.y_valid, p_valid)
    train_metrics = compute_metrics(data.y_train, p_train)
    slices = slice_metrics(data.valid_df, data.y_valid, p_valid, ms.slices)
    fairness: dict[str, Any] | None = None
    if ms.fairness:
        col = ms.fairness.column
        groups = slices.get(col) or slice_metrics(data.valid_df, data.y_valid, p_valid, [col])[col]
        fairness = fairness_report(
            groups,
            column=col,
            metric=ms.fairness.metric,
            min_group_size=ms.fairness.min_group_size,
            max_gap=ms.fairness.max_gap,
        )
    return Evaluation(overall, train_metrics, slices, fairness, prediction_hash(p_valid), p_valid, p_train)
