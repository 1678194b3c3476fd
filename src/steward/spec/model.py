"""The ``model:`` section: estimator, time split, hyperparameter search, slices and fairness."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from steward.spec._base import _Strict
from steward.spec.registry import GateSpec

__all__ = ["TASK_METRICS", "FairnessSpec", "ModelSpec", "SearchParamSpec", "SearchSpec", "SplitSpec", "TaskName"]

TaskName = Literal["binary_classification", "multiclass_classification", "regression"]

TASK_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "binary_classification": ("roc_auc", ("roc_auc", "log_loss", "accuracy", "f1")),
    "multiclass_classification": ("f1_macro", ("accuracy", "f1_macro", "f1_weighted", "log_loss")),
    "regression": ("rmse", ("rmse", "mae", "r2", "mape")),
}
"""Per task: (default metric, every metric ``model.metric`` and ``model.fairness.metric`` accept).
The task seam (``steward.modeling.tasks``) computes exactly these; a test keeps the two in step."""

FAIRNESS_DEFAULT = {"binary_classification": "roc_auc", "multiclass_classification": "f1_macro", "regression": "mae"}


class SearchParamSpec(_Strict):
    """One hyperparameter's search range: ``{low, high, log, type}`` or ``{choices: [...]}``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    type: Literal["float", "int", "categorical"] = "float"
    choices: list[Any] | None = None


class SearchSpec(_Strict):
    """Hyperparameter search: ``n_trials: 0`` means no search."""

    n_trials: int = Field(default=0, ge=0)
    engine: Literal["optuna", "ray"] = "optuna"
    timeout_seconds: float | None = None
    space: dict[str, SearchParamSpec] = Field(default_factory=dict)


class SplitSpec(_Strict):
    """Time split: train on earlier events, validate on later ones."""

    by: Literal["time"] = "time"
    validation_from: str | None = None
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)


class FairnessSpec(_Strict):
    """Largest allowed gap of ``metric`` between the groups of ``column``."""

    column: str
    metric: str = Field(
        default="roc_auc", description="one of the task's metrics; default roc_auc, f1_macro (multiclass) or mae (regression)"
    )
    max_gap: float = 0.1
    min_group_size: int = 50


class ModelSpec(_Strict):
    """The model to train: estimator, split, search, slices, fairness and the promotion gate."""

    name: str = "model"
    estimator: str = "lightgbm.LGBMClassifier"
    params: dict[str, Any] = Field(default_factory=dict)
    task: TaskName = Field(
        default="binary_classification",
        description="binary_classification (0/1 label), multiclass_classification (integer or string classes) or regression (numeric target)",
    )
    metric: str = Field(
        default="roc_auc",
        description="per task (default first): binary roc_auc|log_loss|accuracy|f1; multiclass f1_macro|accuracy|f1_weighted|log_loss; "
        "regression rmse|mae|r2|mape",
    )
    seed: int = 42
    split: SplitSpec = Field(default_factory=SplitSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    slices: list[str] = Field(default_factory=list)
    fairness: FairnessSpec | None = None
    gate: GateSpec = Field(default_factory=GateSpec)
    explain_sample: int = 500
    intended_use: str = ""
    limitations: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_." for c in value):
            raise ValueError("use only letters, digits, '-', '_' and '.'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        # the default metric (and fairness metric) depend on the task: fill them in before validation
        if not isinstance(data, dict):
            return data
        task = data.get("task", "binary_classification")
        if task not in TASK_METRICS:
            return data  # the Literal reports the bad task
        data = dict(data)
        data.setdefault("metric", TASK_METRICS[task][0])
        fairness = data.get("fairness")
        if isinstance(fairness, dict) and "metric" not in fairness:
            data["fairness"] = {**fairness, "metric": FAIRNESS_DEFAULT[task]}
        return data

    @model_validator(mode="after")
    def _metric_fits_task(self) -> ModelSpec:
        allowed = TASK_METRICS[self.task][1]
        if self.metric not in allowed:
            raise ValueError(f"metric {self.metric!r} does not apply to task {self.task}; use one of {', '.join(allowed)}")
        if self.fairness is not None and self.fairness.metric not in allowed:
            raise ValueError(
                f"fairness.metric {self.fairness.metric!r} does not apply to task {self.task}; use one of {', '.join(allowed)}"
            )
        return self
