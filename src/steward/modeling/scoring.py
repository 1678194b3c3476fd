"""Scoring a loaded model on raw feature rows, encoded exactly as training encoded them."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import polars as pl

from steward.errors import NotFound
from steward.modeling.dataset import FeatureEncoding, encode
from steward.modeling.estimators import predict_proba

__all__ = ["model_encoding", "score_frame"]

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


def score_frame(model: Any, model_info: Any, frame: pl.DataFrame | pd.DataFrame) -> np.ndarray:
    """Positive-class probabilities of a loaded model for raw feature rows (Polars or pandas).

    Uses the feature encoding stored with the model, so serving encodes
    exactly as training did.

    Raises:
        NotFound: the model has no Steward metadata.
    """
    return predict_proba(model, encode(frame, model_encoding(model_info)))
