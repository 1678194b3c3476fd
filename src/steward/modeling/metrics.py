"""Metrics overall, per slice, and the fairness gap between groups.

Metric names: binary ``roc_auc``, ``accuracy`` and ``f1`` (higher is better) and
``log_loss`` (lower is better); multiclass ``f1_macro`` and ``f1_weighted`` (higher); regression
``r2`` (higher), ``rmse``, ``mae`` and ``mape`` (lower). The task seam
(:mod:`steward.modeling.tasks`) computes them; this module knows their direction. A metric that is undefined for a group (e.g.
ROC AUC with a single class) is ``None`` and is left out of comparisons.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "compute_metrics",
    "fairness_report",
    "is_non_inferior",
    "prediction_hash",
    "slice_metrics",
]

logger = logging.getLogger(__name__)

HIGHER_IS_BETTER: dict[str, bool] = {
    "roc_auc": True,
    "accuracy": True,
    "f1": True,
    "log_loss": False,
    "f1_macro": True,
    "f1_weighted": True,
    "r2": True,
    "rmse": False,
    "mae": False,
    "mape": False,
}
METRICS = tuple(HIGHER_IS_BETTER)
Scorer = Callable[[np.ndarray, np.ndarray], dict[str, float | None]]
NULL_GROUP = "(null)"


def _clean(value: float) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else float(value)


def compute_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    """ROC AUC, log loss, accuracy and F1 (threshold 0.5) of probabilities ``p`` for labels ``y``."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, dtype="float64"), 1e-15, 1 - 1e-15)
    out: dict[str, float | None] = {"roc_auc": None, "log_loss": None, "accuracy": None, "f1": None}
    if y.size == 0:
        return out
    if len(np.unique(y)) == 2:
        out["roc_auc"] = _clean(float(roc_auc_score(y, p)))
    out["log_loss"] = _clean(float(log_loss(y, p, labels=[0, 1])))
    pred = (p >= 0.5).astype(int)
    out["accuracy"] = _clean(float(accuracy_score(y, pred)))
    out["f1"] = _clean(float(f1_score(y, pred, zero_division=0)))
    return out


def _positives(y: np.ndarray) -> dict[str, Any]:
    return {"positives": int(np.asarray(y).astype(int).sum())}


def slice_metrics(
    frame: pl.DataFrame,
    y: np.ndarray,
    p: np.ndarray,
    columns: list[str],
    *,
    score: Scorer | None = None,
    counts: Callable[[np.ndarray], dict[str, Any]] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{column: {group: {"n", "positives", metric...}}}`` for each slicing column.

    Args:
        frame: The validation rows (same order as ``y`` and ``p``) holding the slicing columns.
        score: The task's metrics of ``(y, p)``; default binary (:func:`compute_metrics`).
        counts: The task's counts of a group's labels (default binary: ``positives``).
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    scorer: Scorer = score or compute_metrics
    counter = counts or _positives
    y = np.asarray(y)
    p = np.asarray(p, dtype="float64")
    for col in columns:
        values = frame[col].cast(pl.Utf8).fill_null(NULL_GROUP).to_numpy()
        groups: dict[str, dict[str, Any]] = {}
        for g in sorted(set(values.tolist())):
            mask = values == g
            entry: dict[str, Any] = {"n": int(mask.sum()), **counter(y[mask])}
            entry.update(scorer(y[mask], p[mask]))
            groups[str(g)] = entry
        out[col] = groups
    return out


def fairness_report(groups: dict[str, dict[str, Any]], *, column: str, metric: str, min_group_size: int, max_gap: float) -> dict[str, Any]:
    """The largest gap of ``metric`` between groups with at least ``min_group_size`` rows.

    Returns:
        ``{"column", "metric", "gap", "best_group", "worst_group", "groups", "max_gap", "within_limit"}``.
    """
    scored = {g: e[metric] for g, e in groups.items() if e["n"] >= min_group_size and e.get(metric) is not None}
    report: dict[str, Any] = {
        "column": column,
        "metric": metric,
        "groups": scored,
        "min_group_size": min_group_size,
        "max_gap": max_gap,
        "gap": None,
        "best_group": None,
        "worst_group": None,
    }
    if len(scored) >= 2:
        hib = HIGHER_IS_BETTER[metric]
        best = max(scored, key=lambda g: scored[g] if hib else -scored[g])
        worst = min(scored, key=lambda g: scored[g] if hib else -scored[g])
        report.update(gap=abs(scored[best] - scored[worst]), best_group=best, worst_group=worst)
    report["within_limit"] = report["gap"] is None or report["gap"] <= max_gap
    return report


def is_non_inferior(metric: str, challenger: float, reference: float, margin: float) -> bool:
    """Whether ``challenger`` is at least as good as ``reference`` up to ``margin``."""
    if HIGHER_IS_BETTER[metric]:
        return challenger >= reference - margin
    return challenger <= reference + margin


def prediction_hash(p: np.ndarray) -> str:
    """sha256 of predictions rounded to 12 decimals (float64 bytes), the reproducibility check."""
    arr = np.ascontiguousarray(np.round(np.asarray(p, dtype="float64"), 12))
    return hashlib.sha256(arr.tobytes()).hexdigest()
