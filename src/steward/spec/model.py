"""The ``model:`` section: estimator, time split, hyperparameter search, slices and fairness."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from steward.spec._base import _Strict
from steward.spec.registry import GateSpec

__all__ = ["FairnessSpec", "ModelSpec", "SearchParamSpec", "SearchSpec", "SplitSpec"]


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
    metric: Literal["roc_auc", "log_loss", "accuracy", "f1"] = "roc_auc"
    max_gap: float = 0.1
    min_group_size: int = 50


class ModelSpec(_Strict):
    """The model to train: estimator, split, search, slices, fairness and the promotion gate."""

    name: str = "model"
    estimator: str = "lightgbm.LGBMClassifier"
    params: dict[str, Any] = Field(default_factory=dict)
    task: Literal["binary_classification"] = "binary_classification"
    metric: Literal["roc_auc", "log_loss", "accuracy", "f1"] = "roc_auc"
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
