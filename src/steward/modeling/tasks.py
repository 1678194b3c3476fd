"""The task seam: what differs between binary classification, multiclass classification and regression.

Every stage asks the task (:func:`task_for`) instead of branching on its name: how the label is typed
(never by a narrowing cast), the classes stored with the model, the metrics and their direction, the
shape of a prediction, and the first-model gate threshold. Adding a task (ranking, forecasting) means
adding one class here and its name to ``steward.spec.model.TASK_METRICS``.
"""

from __future__ import annotations

import json
import logging
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import polars as pl

from steward.errors import SpecError, ValidationFailed
from steward.modeling.metrics import compute_metrics
from steward.spec.model import TASK_METRICS

__all__ = ["TASKS", "BinaryClassification", "MulticlassClassification", "Regression", "Task", "task_for", "task_named"]

logger = logging.getLogger(__name__)

Classes = list[Any]


def _clean(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else float(value)


def _label_error(label: str, dtype: pl.DataType, task: str, fix: str) -> ValidationFailed:
    return ValidationFailed(
        f"label {label!r} has type {dtype}, which a {task.replace('_', ' ')} model cannot learn",
        hint=fix,
        details={"errors": [label]},
    )


def _no_nulls(frame: pl.DataFrame, label: str) -> pl.Series:
    if label not in frame.columns:
        raise ValidationFailed(f"label column {label!r} is not in the frame", details={"errors": [label]})
    col = frame[label]
    if col.null_count() or (col.dtype.is_float() and col.is_nan().any()):
        raise ValidationFailed(f"label {label!r} has nulls", hint="drop or fill the unlabelled rows", details={"errors": [label]})
    return col


class Task(ABC):
    """One kind of supervised problem; stages call these methods and never test the task's name."""

    name: ClassVar[str]
    is_classification: ClassVar[bool] = True

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names this task computes and accepts as ``model.metric``."""
        return TASK_METRICS[self.name][1]

    @property
    def default_metric(self) -> str:
        """The metric used when the spec names none."""
        return TASK_METRICS[self.name][0]

    @abstractmethod
    def classes(self, frame: pl.DataFrame, label: str) -> Classes:
        """The classes (in the model's output order) learned from ``frame``; ``[]`` for regression."""

    @abstractmethod
    def label_array(self, frame: pl.DataFrame, label: str, classes: Classes) -> np.ndarray:
        """The label typed for this task (class index for classifiers, float64 for regression).

        Raises:
            ValidationFailed: the label has nulls, the wrong type, or a class the model does not know.
        """

    @abstractmethod
    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        """The model's output: P(positive) ``[N]``, class probabilities ``[N, C]`` or values ``[N]``."""

    @abstractmethod
    def scores(self, y: np.ndarray, p: np.ndarray, classes: Classes) -> dict[str, float | None]:
        """Every scalar metric of this task (undefined ones are None)."""

    def details(self, y: np.ndarray, p: np.ndarray, classes: Classes) -> dict[str, Any]:
        """Non-scalar evaluation for the model card (per-class scores, confusion matrix); default none."""
        return {}

    def counts(self, y: np.ndarray) -> dict[str, Any]:
        """Counts of a group's labels kept next to its metrics (default none)."""
        return {}

    def label_summary(self, y: np.ndarray, classes: Classes) -> dict[str, Any]:
        """What the model card says about a side's labels."""
        return {}

    def profile_output(self, p: np.ndarray) -> np.ndarray:
        """A 1-D view of the output for drift profiles (the predicted class index for multiclass)."""
        return np.asarray(p, dtype="float64")

    def first_model_threshold(self, metric: str, classes: Classes) -> float | None:
        """The absolute threshold a first model must meet when the spec sets none (None: no default)."""
        return None

    def response_rows(self, out: np.ndarray, classes: Classes) -> list[Any]:
        """The served answer, one JSON value per row, from the raw output (:meth:`predict`'s shape)."""
        return np.asarray(out, dtype="float64").reshape(-1).tolist()

    def log_values(self, out: np.ndarray, classes: Classes) -> list[tuple[float, str | None, str | None]]:
        """Per row, what the prediction log keeps: ``(prediction, label, probabilities JSON)``.

        ``prediction`` is the double column (P(positive), the value, or the predicted class's probability);
        ``label`` and ``probabilities`` are only set by classifiers with named classes (multiclass).
        """
        return [(float(v), None, None) for v in np.asarray(out, dtype="float64").reshape(-1)]

    def positives(self, out: np.ndarray) -> int:
        """Rows served as the positive class (the ``predicted_positive`` counter); 0 where that means nothing."""
        return 0

    def check_train_labels(self, y: np.ndarray) -> None:
        """Refuse a training side that cannot teach this task anything.

        Raises:
            ValidationFailed: a single class (classification) or a constant target (regression).
        """
        if len(np.unique(y)) < 2:
            raise ValidationFailed("the training rows hold a single class", hint="widen the training period", details={"errors": ["label"]})


def _index_labels(frame: pl.DataFrame, label: str, classes: Classes) -> np.ndarray:
    col = _no_nulls(frame, label)
    keys = [str(c) for c in classes]
    values = col.cast(pl.Utf8).to_list()
    index = {k: i for i, k in enumerate(keys)}
    unknown = sorted({v for v in values if v not in index})
    if unknown:
        raise ValidationFailed(
            f"label {label!r} holds classes the model does not know: {', '.join(unknown[:10])}",
            hint=f"the model's classes are {keys}; retrain on data that includes them",
            details={"errors": [label]},
        )
    return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))


def _proba_matrix(out: np.ndarray, classes: Classes) -> np.ndarray:
    p = np.asarray(out, dtype="float64")
    p = p.reshape(p.shape[0] if p.ndim else 1, -1)
    if p.shape[1] != len(classes):
        raise ValueError(f"the model returned {p.shape[1]} class probabilities for {len(classes)} stored classes")
    return p


class BinaryClassification(Task):
    """Two classes, 0/1 (or false/true); the output is the probability of class 1."""

    name = "binary_classification"

    def classes(self, frame: pl.DataFrame, label: str) -> Classes:
        """Always ``[0, 1]`` (the positive class is 1)."""
        self._check_type(frame, label)
        return [0, 1]

    @staticmethod
    def _check_type(frame: pl.DataFrame, label: str) -> None:
        dtype = _no_nulls(frame, label).dtype
        if not (dtype.is_integer() or dtype == pl.Boolean):
            raise _label_error(
                label, dtype, "binary_classification", "use a 0/1 or boolean label, or set model.task: multiclass_classification"
            )

    def label_array(self, frame: pl.DataFrame, label: str, classes: Classes) -> np.ndarray:
        """0/1 as int64; any other value is refused."""
        self._check_type(frame, label)
        y = frame[label].cast(pl.Int64).to_numpy()
        bad = sorted(set(np.unique(y).tolist()) - {0, 1})
        if bad:
            raise ValidationFailed(
                f"label {label!r} has values {bad[:10]}; a binary label is 0/1",
                hint="set model.task: multiclass_classification for more than two classes",
                details={"errors": [label]},
            )
        return y.astype(np.int64)

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        """P(class 1)."""
        if hasattr(model, "predict_proba"):
            return np.asarray(model.predict_proba(x))[:, 1].astype("float64")
        out = np.asarray(model.predict(x), dtype="float64")
        return out if out.ndim == 1 else out[:, -1]

    def scores(self, y: np.ndarray, p: np.ndarray, classes: Classes) -> dict[str, float | None]:
        """ROC AUC, log loss, accuracy and F1 (unchanged from the binary-only days)."""
        return compute_metrics(y, p)

    def counts(self, y: np.ndarray) -> dict[str, Any]:
        """The group's positives."""
        return {"positives": int(np.asarray(y).astype(int).sum())}

    def label_summary(self, y: np.ndarray, classes: Classes) -> dict[str, Any]:
        """The positive rate."""
        return {"positive_rate": float(np.asarray(y).mean()) if len(y) else None}

    def positives(self, out: np.ndarray) -> int:
        """Rows whose P(class 1) is at least 0.5."""
        return int((np.asarray(out, dtype="float64") >= 0.5).sum())


class MulticlassClassification(Task):
    """Three or more classes (integer-coded or strings); the output is one probability per class."""

    name = "multiclass_classification"

    def classes(self, frame: pl.DataFrame, label: str) -> Classes:
        """The sorted distinct labels (ints stay ints, anything else becomes its string)."""
        col = _no_nulls(frame, label)
        dtype = col.dtype
        if dtype.is_float():
            raise _label_error(
                label, dtype, self.name, "a class label is an integer or a string; for a numeric target set model.task: regression"
            )
        if dtype.is_integer():
            return [int(v) for v in col.unique().sort().to_list()]
        if dtype == pl.Boolean:
            return [False, True]
        return [str(v) for v in col.cast(pl.Utf8).unique().sort().to_list()]

    def label_array(self, frame: pl.DataFrame, label: str, classes: Classes) -> np.ndarray:
        """The index of each row's class in ``classes``."""
        dtype = _no_nulls(frame, label).dtype
        if dtype.is_float():
            raise _label_error(
                label, dtype, self.name, "a class label is an integer or a string; for a numeric target set model.task: regression"
            )
        return _index_labels(frame, label, classes)

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        """``[N, C]`` class probabilities, in the stored class order."""
        out = np.asarray(model.predict_proba(x) if hasattr(model, "predict_proba") else model.predict(x), dtype="float64")
        return out.reshape(len(x), -1)

    def label_summary(self, y: np.ndarray, classes: Classes) -> dict[str, Any]:
        """Each class's share of the rows."""
        counts = np.bincount(np.asarray(y).astype(int), minlength=len(classes))
        total = max(int(counts.sum()), 1)
        return {"class_share": {str(c): float(counts[i] / total) for i, c in enumerate(classes)}}

    def profile_output(self, p: np.ndarray) -> np.ndarray:
        """The predicted class index."""
        return np.asarray(np.asarray(p).argmax(axis=1), dtype="float64")

    def scores(self, y: np.ndarray, p: np.ndarray, classes: Classes) -> dict[str, float | None]:
        """Accuracy, macro and weighted F1, and log loss over the model's classes."""
        from sklearn.metrics import accuracy_score, f1_score, log_loss

        out: dict[str, float | None] = dict.fromkeys(self.metrics)
        y = np.asarray(y).astype(int)
        if y.size == 0:
            return out
        p = np.asarray(p, dtype="float64")
        labels = list(range(p.shape[1]))
        pred = p.argmax(axis=1)
        out["accuracy"] = _clean(float(accuracy_score(y, pred)))
        out["f1_macro"] = _clean(float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)))
        out["f1_weighted"] = _clean(float(f1_score(y, pred, labels=labels, average="weighted", zero_division=0)))
        out["log_loss"] = _clean(float(log_loss(y, np.clip(p, 1e-15, 1.0), labels=labels)))
        return out

    def details(self, y: np.ndarray, p: np.ndarray, classes: Classes) -> dict[str, Any]:
        """Per-class precision, recall and support, and the confusion matrix (rows: true, columns: predicted)."""
        from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

        labels = list(range(len(classes)))
        y = np.asarray(y).astype(int)
        pred = np.asarray(p).argmax(axis=1)
        prec, rec, _, sup = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
        per_class = {str(c): {"precision": float(prec[i]), "recall": float(rec[i]), "support": int(sup[i])} for i, c in enumerate(classes)}
        matrix = confusion_matrix(y, pred, labels=labels).tolist()
        return {"classes": [str(c) for c in classes], "per_class": per_class, "confusion_matrix": matrix}

    def first_model_threshold(self, metric: str, classes: Classes) -> float | None:
        """Accuracy must beat guessing uniformly among the classes."""
        return 1.0 / len(classes) if metric == "accuracy" and classes else None

    def response_rows(self, out: np.ndarray, classes: Classes) -> list[Any]:
        """``{"label": class, "probabilities": {class: p, ...}}`` per row, classes in the stored order."""
        p = _proba_matrix(out, classes)
        keys = [str(c) for c in classes]
        return [{"label": classes[int(row.argmax())], "probabilities": dict(zip(keys, row.tolist(), strict=True))} for row in p]

    def log_values(self, out: np.ndarray, classes: Classes) -> list[tuple[float, str | None, str | None]]:
        """The predicted class's probability, its label, and every class's probability as a JSON object."""
        p = _proba_matrix(out, classes)
        keys = [str(c) for c in classes]
        rows: list[tuple[float, str | None, str | None]] = []
        for row in p:
            best = int(row.argmax())
            rows.append((float(row[best]), keys[best], json.dumps(dict(zip(keys, row.tolist(), strict=True)))))
        return rows


class Regression(Task):
    """A numeric target; the output is the predicted value."""

    name = "regression"
    is_classification = False

    def classes(self, frame: pl.DataFrame, label: str) -> Classes:
        """No classes; checks the label is numeric."""
        self.label_array(frame, label, [])
        return []

    def label_array(self, frame: pl.DataFrame, label: str, classes: Classes) -> np.ndarray:
        """The target as float64 (a widening cast only)."""
        col = _no_nulls(frame, label)
        if not (col.dtype.is_numeric() and col.dtype != pl.Boolean):
            raise _label_error(
                label, col.dtype, self.name, "a regression target is numeric; for classes set model.task: multiclass_classification"
            )
        return col.cast(pl.Float64).to_numpy()

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        """The predicted values."""
        return np.asarray(model.predict(x), dtype="float64").reshape(-1)

    def scores(self, y: np.ndarray, p: np.ndarray, classes: Classes) -> dict[str, float | None]:
        """RMSE, MAE, R² and MAPE (rows whose target is zero are left out of MAPE and counted)."""
        out: dict[str, float | None] = dict.fromkeys(self.metrics)
        y = np.asarray(y, dtype="float64")
        p = np.asarray(p, dtype="float64")
        if y.size == 0:
            return out
        err = p - y
        out["rmse"] = _clean(float(np.sqrt(np.mean(err**2))))
        out["mae"] = _clean(float(np.mean(np.abs(err))))
        var = float(np.sum((y - y.mean()) ** 2))
        out["r2"] = _clean(1.0 - float(np.sum(err**2)) / var) if var > 0 else None
        nonzero = y != 0
        if nonzero.any():
            out["mape"] = _clean(float(np.mean(np.abs(err[nonzero] / y[nonzero]))))
        skipped = int((~nonzero).sum())
        if skipped:
            # MAPE divides by the target: zero targets are left out rather than making it infinite
            logger.info("MAPE leaves out %d rows whose target is zero", skipped)
        return out

    def details(self, y: np.ndarray, p: np.ndarray, classes: Classes) -> dict[str, Any]:
        """How many rows MAPE left out (zero targets) and the spread of the residuals."""
        y = np.asarray(y, dtype="float64")
        err = np.asarray(p, dtype="float64") - y
        if y.size == 0:
            return {"mape_zero_targets_skipped": 0}
        q = np.quantile(err, [0.05, 0.5, 0.95]).tolist()
        return {"mape_zero_targets_skipped": int((y == 0).sum()), "residual_quantiles": {"p05": q[0], "p50": q[1], "p95": q[2]}}

    def label_summary(self, y: np.ndarray, classes: Classes) -> dict[str, Any]:
        """Mean and standard deviation of the target."""
        y = np.asarray(y, dtype="float64")
        return {"mean": float(y.mean()) if y.size else None, "std": float(y.std()) if y.size else None}

    def first_model_threshold(self, metric: str, classes: Classes) -> float | None:
        """R² must beat predicting the mean (0)."""
        return 0.0 if metric == "r2" else None

    def response_rows(self, out: np.ndarray, classes: Classes) -> list[Any]:
        """``{"value": v}`` per row."""
        return [{"value": v} for v in np.asarray(out, dtype="float64").reshape(-1).tolist()]

    def check_train_labels(self, y: np.ndarray) -> None:
        """Refuse a constant target."""
        if np.unique(y).size < 2:
            raise ValidationFailed("the training target is constant", hint="widen the training period", details={"errors": ["label"]})


TASKS: dict[str, Task] = {t.name: t for t in (BinaryClassification(), MulticlassClassification(), Regression())}


def task_named(name: str | None) -> Task:
    """The task called ``name`` (None: binary classification, what models trained before tasks existed are).

    Raises:
        SpecError: no such task.
    """
    task = TASKS.get(name or BinaryClassification.name)
    if task is None:
        raise SpecError(f"model.task {name!r} is not a task Steward knows", hint=f"use one of {', '.join(TASKS)}")
    return task


def task_for(model_spec: Any) -> Task:
    """The task of a model section (``spec.model``)."""
    return task_named(str(model_spec.task))
