"""Training runs: split, search, fit, evaluate by slice, explain, track, register, card.

The core, :func:`train_model`, takes a :class:`TrainingSet` so it does not care
how the set was built; :func:`train` builds it with the features stage first.
Every run records the reproducibility triple (git SHA, pinned data versions,
environment lock hash) and enough configuration (``steward/train_config.json``)
for :func:`reproduce` to rebuild the set from the same pins, retrain and check
that validation predictions hash the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steward._primitives import Progress, report_progress
from steward.errors import NotFound, NotReproducible, ValidationFailed
from steward.features import build_training_set
from steward.modeling import fit, resolve_estimator, task_for
from steward.spec import FairnessSpec, ModelSpec, SplitSpec
from steward.training.evaluation import evaluate, prepare
from steward.training.explain import feature_importance
from steward.training.registration import register_run
from steward.training.reproducibility import environment_hash, git_info
from steward.training.search import search_params
from steward.training.tracking import CONFIG_ARTIFACT, audit_run, log_run, run_config, tags_for_run

if TYPE_CHECKING:
    from steward.features.training_set import TrainingSet
    from steward.workspace import Workspace

__all__ = ["ReproduceResult", "TrainResult", "reproduce", "train", "train_model"]

logger = logging.getLogger(__name__)

Builder = Callable[..., "TrainingSet"]


@dataclass
class TrainResult:
    """What one training run produced.

    Attributes:
        run_id: The MLflow run.
        model_name: Registered model name.
        version: The new registered version (alias ``challenger``), or None when not registered.
        metrics: Validation metrics overall (``roc_auc``, ``log_loss``, ``accuracy``, ``f1``).
        slice_metrics: ``{column: {group: {"n", "positives", metric...}}}``.
        fairness: The fairness report (largest gap between groups), or None.
        card_path: The Markdown model card, or None when not registered.
        prediction_hash: sha256 of the validation predictions (the reproduce check).
        data_versions: Every input pinned (``{"silver.flights": 3}``).
        params: The estimator params actually used (after search).
        search: Search summary (engine, best score, trials), or None.
        rows: ``{"train": n, "validation": n}``.
    """

    run_id: str
    model_name: str
    version: int | None
    metrics: dict[str, float | None]
    slice_metrics: dict[str, dict[str, dict[str, Any]]]
    fairness: dict[str, Any] | None
    card_path: Path | None
    prediction_hash: str
    data_versions: dict[str, int]
    params: dict[str, Any]
    search: dict[str, Any] | None = None
    rows: dict[str, int] = field(default_factory=dict)
    feature_importance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["card_path"] = str(self.card_path) if self.card_path else None
        return out


@dataclass
class ReproduceResult:
    """Outcome of :func:`reproduce`: did retraining from the same pins give the same predictions?

    The verdict is :attr:`reproducible`; :meth:`raise_for_mismatch` turns "not reproducible" into
    :class:`~steward.errors.NotReproducible` (``training.not_reproducible``, exit code 13).
    """

    run_id: str
    reproduce_run_id: str
    same_hash: bool
    original_hash: str
    new_hash: str
    data_versions: dict[str, int]
    git_then: str
    git_now: str
    env_hash_then: str
    env_hash_now: str
    metrics: dict[str, float | None]

    @property
    def reproducible(self) -> bool:
        """The verdict: the retrained run's validation predictions hash as the original's did."""
        return self.same_hash

    def raise_for_mismatch(self) -> None:
        """Raise :class:`~steward.errors.NotReproducible` unless the run reproduced."""
        if self.reproducible:
            return
        raise NotReproducible(
            f"run {self.run_id} did not reproduce: validation predictions hash differently",
            hint="compare the code and environment hashes, then and now; seeds and pins were the same",
            details={"reproduce": self.to_dict()},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (with the verdict as ``reproducible``)."""
        return {**asdict(self), "reproducible": self.reproducible}


def _say(progress: Progress | None, msg: str) -> None:
    logger.info(msg)
    report_progress(progress, msg)


def _check_columns(ts: TrainingSet, ms: ModelSpec) -> None:
    cols = set(ts.frame.columns)
    wanted = {ts.label: "label", ts.event_time: "event time"}
    wanted.update({c: "slice" for c in ms.slices})
    if ms.fairness:
        wanted[ms.fairness.column] = "fairness column"
    missing = [f"{c} ({what})" for c, what in wanted.items() if c not in cols]
    if missing:
        raise ValidationFailed(
            f"the training set lacks columns: {', '.join(missing)}",
            hint="slices and the fairness column must be entity keys or columns of the training set",
            details={"errors": missing},
        )


def train_model(
    ws: Workspace,
    training_set: TrainingSet,
    *,
    spec: ModelSpec | None = None,
    progress: Progress | None = None,
    register: bool = True,
    fixed_params: dict[str, Any] | None = None,
    run_tags: dict[str, str] | None = None,
    actor: str | None = None,
) -> TrainResult:
    """Train, evaluate, explain and track one model on ``training_set``; register it as ``challenger``.

    The steps live in their own modules: :mod:`~steward.training.evaluation` (split, encode, score),
    :mod:`~steward.training.search`, :mod:`~steward.training.explain`, :mod:`~steward.training.tracking`
    (the run, its artifacts and its audit entry) and :mod:`~steward.training.registration` (version and card).

    Args:
        ws: The workspace (run tracker, model registry, state root, metadata store).
        training_set: Labelled events with features, every input pinned.
        spec: The model section to use; default ``ws.spec.model``.
        progress: Told of each step, as ``progress(step, 0, None)`` (see :class:`~steward._primitives.Progress`).
        register: Register the model and write its card (False for reproduce runs).
        fixed_params: Use exactly these estimator params and skip the search (reproduce).
        run_tags: Extra MLflow run tags.
        actor: Who trains (default ``$STEWARD_ACTOR`` or the OS user).

    Raises:
        ValidationFailed: columns are missing, the label has nulls or a split side is empty.
        SpecError: the estimator or search space is invalid.
    """
    ms = spec or ws.spec.model
    task = task_for(ms)
    ref = resolve_estimator(ms.estimator, classifier=task.is_classification)
    _check_columns(training_set, ms)

    _say(progress, f"splitting {training_set.frame.height} rows by {training_set.event_time}")
    data = prepare(training_set, ms.split, task)

    search_summary: dict[str, Any] | None = None
    params = dict(ms.params)
    if fixed_params is not None:
        params = dict(fixed_params)
    elif ms.search.n_trials > 0:
        params, search_summary = search_params(ws, ms, ref, params, training_set, data, progress=progress)

    _say(progress, f"fitting {ref.path} on {len(data.x_train)} rows")
    t0 = time.perf_counter()
    model = fit(ref, params, ms.seed, data.x_train, data.y_train, data.cat_features)
    fit_seconds = time.perf_counter() - t0
    evaluation = evaluate(ms, model, data)

    _say(progress, "explaining (global feature importance)")
    importance = feature_importance(ref, model, data.x_valid, data.y_valid, sample=ms.explain_sample, seed=ms.seed)

    git = git_info(ws.spec.base_dir)
    env_hash, env_source = environment_hash(ws.spec.base_dir)
    data_versions = training_set.data_versions

    _say(progress, "tracking the run in MLflow")
    tags = tags_for_run(
        ms,
        ref,
        training_set,
        git=git,
        env_hash=env_hash,
        env_source=env_source,
        pred_hash=evaluation.prediction_hash,
        cut=data.cut,
        actor=actor,
        extra=run_tags,
    )
    run_id, info = log_run(
        ws,
        ms,
        ref,
        training_set,
        data,
        model,
        params=params,
        evaluation=evaluation,
        importance=importance,
        search_summary=search_summary,
        fit_seconds=fit_seconds,
        config=run_config(ms, ref, params, data, training_set),
        tags=tags,
    )

    version: int | None = None
    card_path: Path | None = None
    if register:
        _say(progress, f"registering {ms.name}")
        version, card_path = register_run(
            ws,
            ms,
            ref,
            info=info,
            run_id=run_id,
            evaluation=evaluation,
            importance=importance,
            training_set=training_set,
            data=data,
            git=git.label,
            env_hash=env_hash,
            actor=actor,
        )
    audit_run(
        ws,
        ms,
        ref,
        run_id=run_id,
        version=version,
        card_path=card_path,
        tags=tags,
        data_versions=data_versions,
        evaluation=evaluation,
        git=git.label,
        env_hash=env_hash,
    )
    return TrainResult(
        run_id=run_id,
        model_name=ms.name,
        version=version,
        metrics=evaluation.overall,
        slice_metrics=evaluation.slices,
        fairness=evaluation.fairness,
        card_path=card_path,
        prediction_hash=evaluation.prediction_hash,
        data_versions=data_versions,
        params=params,
        search=search_summary,
        rows=data.rows,
        feature_importance=importance,
    )


def _default_builder(ws: Workspace, *, pins: dict[str, int] | None = None) -> TrainingSet:
    ts: TrainingSet = build_training_set(ws, pins=pins)
    return ts


def train(
    ws: Workspace, *, progress: Progress | None = None, pins: dict[str, int] | None = None, builder: Builder | None = None
) -> TrainResult:
    """Build the pinned training set with the features stage, then :func:`train_model` on it.

    Args:
        pins: Pin inputs to these versions (``{"silver.flights": 3}``); default: latest.
        builder: Replaces ``steward.features.build_training_set`` (tests, custom sets).
    """
    _say(progress, "building the pinned training set")
    ts = (builder or _default_builder)(ws, pins=pins)
    return train_model(ws, ts, progress=progress)


def reproduce(ws: Workspace, run_id: str, *, builder: Builder | None = None, progress: Progress | None = None) -> ReproduceResult:
    """Rebuild a run's training set from its pinned versions, retrain, and compare prediction hashes.

    The retrain uses the run's recorded estimator, params, seed and split cut
    (not the current spec), and is tracked as a new run tagged
    ``steward.reproduces=RUN_ID``; nothing is registered.

    Raises:
        NotFound: no such run, or it was not made by ``steward train``.
        BackendUnavailable: the tracking store cannot be reached.
    """
    tracker = ws.tracker
    try:
        run = tracker.get_run(run_id)
    except NotFound:
        raise NotFound(f"no MLflow run {run_id}", hint="copy a run id from 'steward registry list'") from None
    try:
        config = tracker.load_dict(run_id, CONFIG_ARTIFACT)
    except NotFound:
        raise NotFound(f"run {run_id} has no {CONFIG_ARTIFACT}", hint="only runs made by 'steward train' can be reproduced") from None
    pins = {str(k): int(v) for k, v in config["data_versions"].items()}
    _say(progress, f"rebuilding the training set at {', '.join(f'{k}@{v}' for k, v in sorted(pins.items())) or 'no pins'}")
    ts = (builder or _default_builder)(ws, pins=pins)
    if ts.data_versions != pins:
        raise ValidationFailed(
            f"the builder returned inputs {ts.data_versions}, not the pinned {pins}",
            hint="the training-set builder must honour pins",
            details={"errors": ["pins"]},
        )
    base = ws.spec.model
    spec = base.model_copy(
        update={
            "name": config["model_name"],
            "estimator": config["estimator"],
            "params": config["params"],
            "seed": int(config["seed"]),
            "metric": config["metric"],
            "task": config.get("task", "binary_classification"),
            "split": SplitSpec(validation_from=config["split"]["validation_from"]),
            "slices": list(config["slices"]),
            "fairness": FairnessSpec.model_validate(config["fairness"]) if config.get("fairness") else None,
        }
    )
    ts.feature_names = list(config["features"])
    ts.categorical = list(config["categorical"])
    result = train_model(
        ws, ts, spec=spec, progress=progress, register=False, fixed_params=dict(config["params"]), run_tags={"steward.reproduces": run_id}
    )
    original = run.tags.get("steward.prediction_hash", "")
    env_now, _ = environment_hash(ws.spec.base_dir)
    git_then = run.tags.get("steward.git_sha", "none")
    if run.tags.get("steward.git_dirty") == "true":
        git_then += "+dirty"
    same = bool(original) and original == result.prediction_hash
    tracker.set_tags(result.run_id, {"steward.reproduced_same_hash": str(same).lower()})
    return ReproduceResult(
        run_id=run_id,
        reproduce_run_id=result.run_id,
        same_hash=same,
        original_hash=original,
        new_hash=result.prediction_hash,
        data_versions=pins,
        git_then=git_then,
        git_now=git_info(ws.spec.base_dir).label,
        env_hash_then=run.tags.get("steward.env_hash", ""),
        env_hash_now=env_now,
        metrics=result.metrics,
    )
