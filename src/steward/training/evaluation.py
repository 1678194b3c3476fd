"""From a training set to the matrices a model is fitted on, and a fitted model to its validation scores.

:func:`prepare` sorts and splits the set by time, learns the feature encoding on the
training rows and builds both sides' matrices; :func:`evaluate` scores a fitted model on
both sides: metrics overall and per slice, the fairness gap, and the hash of the
validation predictions (the reproducibility check).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import polars as pl

from steward.modeling import (
    FeatureEncoding,
    Task,
    encode,
    fairness_report,
    fit_encoding,
    prediction_hash,
    slice_metrics,
    sort_for_training,
    split_by_time,
    task_named,
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
    task: Task = field(default_factory=lambda: task_named(None))
    classes: list[Any] = field(default_factory=list)

    @property
    def cat_features(self) -> list[str]:
        """The encoded categorical features (those with a vocabulary)."""
        return list(self.encoding.categorical)

    @property
    def rows(self) -> dict[str, int]:
        """``{"train": n, "validation": n}``."""
        return {"train": len(self.x_train), "validation": len(self.x_valid)}


def prepare(training_set: TrainingSet, split: SplitSpec, task: Task | None = None) -> PreparedData:
    """Sort, split by time, fit the encoding on the training rows and build both sides' matrices.

    The label is typed by ``task`` (default binary); the classes come from the whole set, so a class seen
    only in the validation period is still one the model answers for.

    Raises:
        ValidationFailed: a split side is empty, a label is null or of the wrong type, or the training rows
            hold a single class (a constant target).
    """
    task = task or task_named(None)
    features = list(training_set.feature_names)
    categorical = [c for c in training_set.categorical if c in features]
    frame = sort_for_training(training_set.frame, training_set.event_time, training_set.entity_keys)
    train_df, valid_df, cut = split_by_time(frame, training_set.event_time, split)
    classes = task.classes(frame, training_set.label)
    encoding = fit_encoding(train_df, features, categorical)
    x_train, y_train = encode(train_df, encoding), task.label_array(train_df, training_set.label, classes)
    x_valid, y_valid = encode(valid_df, encoding), task.label_array(valid_df, training_set.label, classes)
    task.check_train_labels(y_train)
    return PreparedData(features, categorical, encoding, train_df, valid_df, cut, x_train, y_train, x_valid, y_valid, task, classes)


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
    details: dict[str, Any] = field(default_factory=dict)


def evaluate(ms: ModelSpec, model: Any, data: PreparedData) -> Evaluation:
    """Score ``model`` on both sides: metrics overall, per slice of ``ms.slices``, and the fairness gap."""
    task, classes = data.task, data.classes

    def score(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
        return task.scores(y, p, classes)

    p_valid = task.predict(model, data.x_valid)
    p_train = task.predict(model, data.x_train)
    overall = score(data.y_valid, p_valid)
    train_metrics = score(data.y_train, p_train)
    slices = slice_metrics(data.valid_df, data.y_valid, p_valid, ms.slices, score=score, counts=task.counts)
    fairness: dict[str, Any] | None = None
    if ms.fairness:
        col = ms.fairness.column
        groups = slices.get(col) or slice_metrics(data.valid_df, data.y_valid, p_valid, [col], score=score, counts=task.counts)[col]
        fairness = fairness_report(
            groups,
            column=col,
            metric=ms.fairness.metric,
            min_group_size=ms.fairness.min_group_size,
            max_gap=ms.fairness.max_gap,
        )
    details = task.details(data.y_valid, p_valid, classes)
    return Evaluation(overall, train_metrics, slices, fairness, prediction_hash(p_valid), p_valid, p_train, details)
