"""Modelling: what training and the promotion gate share, independent of how a model is trained or judged.

* data to matrices: :func:`split_by_time`, :class:`FeatureEncoding` (:func:`fit_encoding`, :func:`encode`),
  :func:`label_array`;
* estimators: :func:`resolve_estimator` to an :class:`EstimatorRef`, :func:`fit`, :func:`predict_proba`,
  and logging and loading them natively and safely (:func:`log_native`, :func:`load_native`);
* metrics: :func:`compute_metrics`, :func:`slice_metrics`, :func:`fairness_report`, the direction of each
  metric (:data:`HIGHER_IS_BETTER`, :func:`is_non_inferior`) and :func:`prediction_hash`;
* the task seam (:mod:`steward.modeling.tasks`): :func:`task_for` gives the :class:`Task` that types
  the label, knows the classes, scores and shapes predictions;
* scoring a loaded model on raw rows: :func:`score_frame`, with the encoding stored in the model
  (:func:`model_encoding`).

This layer sits below monitoring, training and the registry: it imports none of them. What depends on
the task (label typing, metrics and their direction, the shape of the output) lives here and only here.
Heavy libraries (LightGBM, scikit-learn, skops) are imported inside the functions that use them.
"""

from steward.modeling.dataset import FeatureEncoding, encode, fit_encoding, label_array, sort_for_training, split_by_time
from steward.modeling.estimators import EstimatorRef, fit, load_native, log_native, pip_requirements, predict_proba, resolve_estimator
from steward.modeling.metrics import (
    HIGHER_IS_BETTER,
    METRICS,
    compute_metrics,
    fairness_report,
    is_non_inferior,
    prediction_hash,
    slice_metrics,
)
from steward.modeling.scoring import model_classes, model_encoding, model_task, score_frame
from steward.modeling.tasks import TASKS, BinaryClassification, MulticlassClassification, Regression, Task, task_for, task_named

__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "TASKS",
    "BinaryClassification",
    "EstimatorRef",
    "FeatureEncoding",
    "MulticlassClassification",
    "Regression",
    "Task",
    "compute_metrics",
    "encode",
    "fairness_report",
    "fit",
    "fit_encoding",
    "is_non_inferior",
    "label_array",
    "load_native",
    "log_native",
    "model_classes",
    "model_encoding",
    "model_task",
    "pip_requirements",
    "predict_proba",
    "prediction_hash",
    "resolve_estimator",
    "score_frame",
    "slice_metrics",
    "sort_for_training",
    "split_by_time",
    "task_for",
    "task_named",
]
