"""Hyperparameter search: Optuna in-process, or the same Optuna search driven by Ray Tune.

Both engines score a trial by fitting on the earlier part of the training
period and evaluating on its later part (an inner time split), so the
validation set stays untouched until the final model is scored.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from steward._extras import optional_import
from steward._primitives import Progress, report_progress
from steward.errors import SpecError
from steward.modeling import HIGHER_IS_BETTER, EstimatorRef, Task, encode, fit, split_by_time, task_named
from steward.spec import ModelSpec, SearchParamSpec, SearchSpec, SplitSpec
from steward.training.evaluation import PreparedData

if TYPE_CHECKING:
    from steward.features.training_set import TrainingSet
    from steward.workspace import Workspace

__all__ = ["SearchData", "SearchResult", "run_search", "search_params"]

logger = logging.getLogger(__name__)


@dataclass
class SearchData:
    """What every trial needs: the estimator, fixed params and the inner split."""

    ref: EstimatorRef
    base_params: dict[str, Any]
    seed: int
    metric: str
    categorical: list[str]
    x_fit: pd.DataFrame
    y_fit: np.ndarray
    x_val: pd.DataFrame
    y_val: np.ndarray
    task: Task = field(default_factory=lambda: task_named(None))
    classes: list[Any] = field(default_factory=list)


@dataclass
class SearchResult:
    """Best params found, their inner-validation score and every trial."""

    engine: str
    best_params: dict[str, Any]
    best_score: float
    trials: list[dict[str, Any]] = field(default_factory=list)


def _score(data: SearchData, params: dict[str, Any]) -> float:
    model = fit(data.ref, {**data.base_params, **params}, data.seed, data.x_fit, data.y_fit, data.categorical)
    value = data.task.scores(data.y_val, data.task.predict(model, data.x_val), data.classes)[data.metric]
    if value is None:
        # undefined metric (e.g. a single class in the inner split): the worst score
        return -np.inf if HIGHER_IS_BETTER[data.metric] else np.inf
    return float(value)


def _distributions(space: dict[str, SearchParamSpec]) -> dict[str, Any]:
    import optuna

    out: dict[str, Any] = {}
    for name, p in space.items():
        if p.type == "categorical" or p.choices is not None:
            if not p.choices:
                raise SpecError(f"model.search.space.{name}: a categorical parameter needs 'choices'", hint="add choices: [a, b]")
            out[name] = optuna.distributions.CategoricalDistribution(p.choices)
            continue
        if p.low is None or p.high is None or p.low > p.high:
            raise SpecError(f"model.search.space.{name}: needs low <= high", hint="e.g. {low: 0.01, high: 0.3, log: true}")
        if p.type == "int":
            out[name] = optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log)
        else:
            out[name] = optuna.distributions.FloatDistribution(float(p.low), float(p.high), log=p.log)
    return out


def run_search(search: SearchSpec, data: SearchData, *, storage_dir: Path) -> SearchResult:
    """Run ``search.n_trials`` trials on ``search.engine`` and return the best params.

    Raises:
        SpecError: the search space is empty or malformed.
    """
    if not search.space:
        raise SpecError("model.search.n_trials > 0 but model.search.space is empty", hint="add parameters under model.search.space")
    dists = _distributions(search.space)
    if search.engine == "ray":
        return _ray_search(search, data, dists, storage_dir)
    return _optuna_search(search, data, dists)


def _optuna_search(search: SearchSpec, data: SearchData, dists: dict[str, Any]) -> SearchResult:
    import optuna

    study = optuna.create_study(
        direction="maximize" if HIGHER_IS_BETTER[data.metric] else "minimize",
        sampler=optuna.samplers.TPESampler(seed=data.seed),
    )

    def objective(trial: Any) -> float:
        params = {name: _suggest(trial, name, dist) for name, dist in dists.items()}
        return _score(data, params)

    study.optimize(objective, n_trials=search.n_trials, timeout=search.timeout_seconds)
    trials = [{"number": t.number, "params": t.params, "score": t.value} for t in study.trials]
    return SearchResult("optuna", dict(study.best_params), float(study.best_value), trials)


def _suggest(trial: Any, name: str, dist: Any) -> Any:
    import optuna

    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, log=dist.log)


def _ray_trainable(config: dict[str, Any], data: SearchData) -> None:
    from ray import tune

    tune.report({"score": _score(data, dict(config))})


def _ray_search(search: SearchSpec, data: SearchData, dists: dict[str, Any], storage_dir: Path) -> SearchResult:
    ray = optional_import("ray", extra="ray", needed_for="model.search.engine: ray")
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    if not ray.is_initialized():
        # a local Ray, sized for one search, without the dashboard
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    mode = "max" if HIGHER_IS_BETTER[data.metric] else "min"
    searcher = OptunaSearch(space=dists, metric="score", mode=mode, seed=data.seed)
    storage_dir.mkdir(parents=True, exist_ok=True)
    tuner = tune.Tuner(
        tune.with_parameters(_ray_trainable, data=data),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=search.n_trials,
            max_concurrent_trials=1,
            reuse_actors=True,  # one worker process for every trial: imports are paid once
            time_budget_s=search.timeout_seconds,
        ),
        run_config=tune.RunConfig(storage_path=str(storage_dir.resolve()), name=f"search-{uuid.uuid4().hex[:8]}", verbose=0),
    )
    grid = tuner.fit()
    trials: list[dict[str, Any]] = []
    for i in range(len(grid)):
        res: Any = grid[i]
        if res.error is None and res.metrics and "score" in res.metrics:
            trials.append({"number": i, "params": {k: res.config[k] for k in dists}, "score": float(res.metrics["score"])})
    if not trials:
        raise SpecError(
            "the Ray Tune search produced no successful trial", code="training.search_failed", hint="run with -v to see trial errors"
        )
    best = (max if mode == "max" else min)(trials, key=lambda t: float(t["score"]))
    return SearchResult("ray", dict(best["params"]), float(best["score"]), trials)


def search_params(
    ws: Workspace,
    ms: ModelSpec,
    ref: EstimatorRef,
    params: dict[str, Any],
    training_set: TrainingSet,
    data: PreparedData,
    *,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Search the estimator's params on an inner time split of the training rows; return ``(params, summary)``.

    The last part of the training period scores each trial, so the validation rows stay unseen until
    the final model is scored. ``params`` are the base params updated with the best trial's.
    """
    # the inner split: the last part of the training period scores each trial
    fit_df, val_df, inner_cut = split_by_time(
        data.train_df, training_set.event_time, SplitSpec(validation_fraction=ms.split.validation_fraction)
    )
    search_data = SearchData(
        ref=ref,
        base_params=params,
        seed=ms.seed,
        metric=ms.metric,
        categorical=data.cat_features,
        x_fit=encode(fit_df, data.encoding),
        y_fit=data.task.label_array(fit_df, training_set.label, data.classes),
        x_val=encode(val_df, data.encoding),
        y_val=data.task.label_array(val_df, training_set.label, data.classes),
        task=data.task,
        classes=data.classes,
    )
    msg = f"searching {ms.search.n_trials} trials on {ms.search.engine} (inner validation from {inner_cut})"
    logger.info(msg)
    report_progress(progress, msg)
    result = run_search(ms.search, search_data, storage_dir=ws.root / "ray_results")
    summary = {
        "engine": result.engine,
        "n_trials": len(result.trials),
        "best_score": result.best_score,
        "best_params": result.best_params,
        "inner_validation_from": inner_cut,
        "trials": result.trials,
    }
    return {**params, **result.best_params}, summary
