"""Scoring a loaded model on raw feature rows, encoded exactly as training encoded them."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import polars as pl

from steward.errors import NotFound
from steward.modeling.dataset import FeatureEncoding, encode
from steward.modeling.tasks import Task, task_named

__all__ = ["model_classes", "model_encoding", "model_task", "score_frame"]

logger = logging.getLogger(__name__)


def model_encoding(model_info: Any) -> FeatureEncoding:
    """The feature encoding stored in a Steward model's metadata (``metadata["steward"]["encoding"]``).

    Raises:
        NotFound: the model has no Steward metadata (it was not trained by Steward).
    """
    meta = (getattr(model_info, "metadata", None) or {}).get("steward")
    if not meta:
        raise NotFound("the model has no Steward metadata (feature encoding)", hint="only models trained by Steward can be scored")
    return FeatureEncoding.from_dict(meta["encoding"])


def _steward_meta(model_info: Any) -> dict[str, Any]:
    meta = (getattr(model_info, "metadata", None) or {}).get("steward")
    return dict(meta) if meta else {}


def model_task(model_info: Any) -> Task:
    """The task a Steward model was trained for (models from before tasks existed are binary)."""
    return task_named(_steward_meta(model_info).get("task"))


def model_classes(model_info: Any) -> list[Any]:
    """The classes stored with the model, in its output order (``[0, 1]`` for old binary models, ``[]`` for regression)."""
    meta = _steward_meta(model_info)
    if "classes" in meta:
        return list(meta["classes"])
    return [0, 1] if model_task(model_info).is_classification else []


def score_frame(model: Any, model_info: Any, frame: pl.DataFrame | pd.DataFrame) -> np.ndarray:
    """The model's output for raw feature rows (Polars or pandas), shaped by its task.

    Binary: P(positive) ``[N]``; multiclass: ``[N, C]`` probabilities in the stored class order;
    regression: values ``[N]``.

    Uses the feature encoding stored with the model, so serving encodes
    exactly as training did.

    Raises:
        NotFound: the model has no Steward metadata.
    """
    return model_task(model_info).predict(model, encode(frame, model_encoding(model_info)))
