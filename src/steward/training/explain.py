"""Global feature importance: SHAP for tree models, permutation importance otherwise.

Both run on a bounded sample of the validation rows, so explaining costs the
same on a thousand rows or a million.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from steward.modeling import EstimatorRef

__all__ = ["feature_importance"]

logger = logging.getLogger(__name__)


def feature_importance(ref: EstimatorRef, model: Any, x: pd.DataFrame, y: np.ndarray, *, sample: int, seed: int) -> dict[str, Any]:
    """Mean |SHAP| per feature (trees) or the ROC AUC drop under permutation (others).

    Returns:
        ``{"method", "sample_size", "importance": {feature: value}}``, most important first.
    """
    n = min(sample, len(x))
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(x), size=n, replace=False)) if n < len(x) else np.arange(len(x))
    xs, ys = x.iloc[idx], np.asarray(y)[idx]
    if ref.kind == "lightgbm":
        import shap

        values = shap.TreeExplainer(model).shap_values(xs)
        arr = np.asarray(values[-1] if isinstance(values, list) else values)
        if arr.ndim == 3:  # (rows, features, classes)
            arr = arr[:, :, -1]
        scores = np.abs(arr).mean(axis=0)
        method = "shap_tree"
    else:
        from sklearn.inspection import permutation_importance

        # a float target is a regression (R²); class indices score by ROC AUC (two) or accuracy (more)
        scoring = "r2" if ys.dtype.kind == "f" else ("roc_auc" if len(np.unique(ys)) == 2 else "accuracy")
        res = permutation_importance(model, xs, ys, scoring=scoring, n_repeats=3, random_state=seed)
        scores = np.asarray(res.importances_mean)
        method = f"permutation_{scoring}"
    ranked = sorted(zip(x.columns, scores.tolist(), strict=True), key=lambda kv: -kv[1])
    return {"method": method, "sample_size": int(n), "importance": {str(k): float(v) for k, v in ranked}}
