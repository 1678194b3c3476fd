"""Training runs: split, search, fit, evaluate by slice, explain, track, register, card.

The core, :func:`train_model`, takes a :class:`TrainingSet` so it does not care
how the set was built; :func:`train` builds it with the features stage first.
Every run records the reproducibility triple (git SHA, pinned data versions,
environment lock hash) and enough configuration (``steward/train_config.json``)
for :func:`reproduce` to rebuild the set from the same pins, retrain and check
that validation predictions hash the same.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from steward._primitives import Progress, report_progress, resolve_actor, utcnow
from steward.backends.base import tracked_run
from steward.errors import NotFound, NotReproducible, ValidationFailed
from steward.modeling import (
    METRICS,
    EstimatorRef,
    FeatureEncoding,
    compute_metrics,
    encode,
    fairness_report,
    fit,
    fit_encoding,
    label_array,
    log_native,
    predict_proba,
    prediction_hash,
    resolve_estimator,
    slice_metrics,
    sort_for_training,
    split_by_time,
)
from steward.registry.gate import VALIDATION_ARTIFACT
from steward.spec import FairnessSpec, ModelSpec, SplitSpec
from steward.training.reproducibility import environment_hash, git_info

if TYPE_CHECKING:
    from steward.backends.base import LoggedModel
    from steward.features.training_set import TrainingSet
    from steward.workspace import Workspace

__all__ = ["ReproduceResult", "TrainResult", "reproduce", "train", "train_model"]

logger = logging.getLogger(__name__)

Builder = Callable[..., "TrainingSet"]

CONFIG_ARTIFACT = "steward/train_config.json"


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


def _flat_params(params: dict[str, Any]) -> dict[str, str]:
    return {str(k)[:250]: str(v)[:6000] for k, v in params.items()}


def _safe_metric_key(*parts: str) -> str:
    keep = "".join(c if c.isalnum() or c in "_-. /" else "_" for c in ".".join(parts))
    return keep[:250]


def _reference_profile(frame: pl.DataFrame, features: list[str], categorical: list[str], prediction: Any, target: Any, seed: int) -> Any:
    from steward.monitoring import build_reference_profile

    return build_reference_profile(
        frame, features, categorical, prediction=np.asarray(prediction), target=np.asarray(target), seed=seed, meta={"source": "training"}
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
    ref = resolve_estimator(ms.estimator)
    _check_columns(training_set, ms)
    features = list(training_set.feature_names)
    categorical = [c for c in training_set.categorical if c in features]

    _say(progress, f"splitting {training_set.frame.height} rows by {training_set.event_time}")
    frame = sort_for_training(training_set.frame, training_set.event_time, training_set.entity_keys)
    train_df, valid_df, cut = split_by_time(frame, training_set.event_time, ms.split)
    encoding = fit_encoding(train_df, features, categorical)
    cat_features = list(encoding.categorical)
    x_train, y_train = encode(train_df, encoding), label_array(train_df, training_set.label)
    x_valid, y_valid = encode(valid_df, encoding), label_array(valid_df, training_set.label)
    if len(np.unique(y_train)) < 2:
        raise ValidationFailed("the training rows hold a single class", hint="widen the training period", details={"errors": ["label"]})

    search_summary: dict[str, Any] | None = None
    params = dict(ms.params)
    if fixed_params is not None:
        params = dict(fixed_params)
    elif ms.search.n_trials > 0:
        params, search_summary = _search(ws, ms, ref, params, train_df, training_set, encoding, progress)

    _say(progress, f"fitting {ref.path} on {len(x_train)} rows")
    t0 = time.perf_counter()
    model = fit(ref, params, ms.seed, x_train, y_train, cat_features)
    fit_seconds = time.perf_counter() - t0
    p_valid = predict_proba(model, x_valid)
    p_train = predict_proba(model, x_train)
    overall = compute_metrics(y_valid, p_valid)
    train_metrics = compute_metrics(y_train, p_train)
    slices = slice_metrics(valid_df, y_valid, p_valid, ms.slices)
    fairness: dict[str, Any] | None = None
    if ms.fairness:
        groups = slices.get(ms.fairness.column) or slice_metrics(valid_df, y_valid, p_valid, [ms.fairness.column])[ms.fairness.column]
        fairness = fairness_report(
            groups,
            column=ms.fairness.column,
            metric=ms.fairness.metric,
            min_group_size=ms.fairness.min_group_size,
            max_gap=ms.fairness.max_gap,
        )
    pred_hash = prediction_hash(p_valid)

    _say(progress, "explaining (global feature importance)")
    from steward.training.explain import feature_importance

    importance = feature_importance(ref, model, x_valid, y_valid, sample=ms.explain_sample, seed=ms.seed)

    git = git_info(ws.spec.base_dir)
    env_hash, env_source = environment_hash(ws.spec.base_dir)
    data_versions = training_set.data_versions
    config = {
        "model_name": ms.name,
        "estimator": ref.path,
        "params": params,
        "seed": ms.seed,
        "metric": ms.metric,
        "split": {"validation_from": cut, "requested": ms.split.model_dump()},
        "features": features,
        "categorical": cat_features,
        "label": training_set.label,
        "event_time": training_set.event_time,
        "entity_keys": list(training_set.entity_keys),
        "slices": list(ms.slices),
        "fairness": ms.fairness.model_dump() if ms.fairness else None,
        "inputs": [str(r) for r in training_set.inputs],
        "data_versions": data_versions,
    }

    _say(progress, "tracking the run in MLflow")
    tracker = ws.tracker
    exp_id = tracker.experiment_id(ws.spec.project)
    tags = {
        "steward.model_name": ms.name,
        "steward.estimator": ref.path,
        "steward.git_sha": git.sha or "none",
        "steward.git_dirty": "unknown" if git.dirty is None else str(git.dirty).lower(),
        "steward.data_versions": json.dumps(data_versions, sort_keys=True),
        "steward.inputs": ",".join(str(r) for r in training_set.inputs),
        "steward.env_hash": env_hash,
        "steward.env_source": env_source,
        "steward.prediction_hash": pred_hash,
        "steward.validation_from": cut,
        "steward.actor": resolve_actor(actor),
        **(run_tags or {}),
    }
    with tracked_run(tracker, exp_id, run_name=f"{ms.name}-{utcnow()[:19]}", tags=tags) as run_id:
        tracker.log_params(run_id, _flat_params({**params, "seed": ms.seed, "estimator": ref.path, "validation_from": cut}))
        metrics: dict[str, float] = {f"valid_{k}": v for k, v in overall.items() if v is not None}
        metrics.update({f"train_{k}": v for k, v in train_metrics.items() if v is not None})
        metrics.update({"rows_train": float(len(x_train)), "rows_validation": float(len(x_valid)), "fit_seconds": fit_seconds})
        for col, groups in slices.items():
            for g, e in groups.items():
                for m in METRICS:
                    if e.get(m) is not None:
                        metrics[_safe_metric_key("slice", col, g, m)] = float(e[m])
        if fairness and fairness["gap"] is not None:
            metrics[_safe_metric_key("fairness", fairness["column"], fairness["metric"], "gap")] = float(fairness["gap"])
        tracker.log_metrics(run_id, metrics)
        tracker.log_dict(run_id, config, CONFIG_ARTIFACT)
        tracker.log_dict(run_id, {"overall": overall, "train": train_metrics, "slices": slices}, "metrics/metrics.json")
        if fairness is not None:
            tracker.log_dict(run_id, fairness, "metrics/fairness.json")
        tracker.log_dict(run_id, importance, "explanations/feature_importance.json")
        # The reference profile monitoring compares every serving window against (never re-reading training data).
        profile = _reference_profile(train_df, features, categorical, p_train, y_train, ms.seed)
        tracker.log_dict(run_id, profile.to_dict(), "reference_profile.json")
        if search_summary is not None:
            tracker.log_dict(run_id, search_summary, "search/trials.json")
        keep = list(dict.fromkeys([*features, training_set.label, training_set.event_time, *ms.slices, *training_set.entity_keys]))
        if ms.fairness:
            keep.append(ms.fairness.column)
        keep = [c for c in dict.fromkeys(keep) if c in valid_df.columns]
        with tempfile.TemporaryDirectory() as tmp:
            # stored where the gate reads it (registry.VALIDATION_ARTIFACT)
            where = PurePosixPath(VALIDATION_ARTIFACT)
            vpath = Path(tmp) / where.name
            valid_df.select(keep).write_parquet(vpath)
            tracker.log_artifact(run_id, vpath, artifact_path=str(where.parent))
        example = x_valid.head(5)
        metadata = {
            "steward": {
                "encoding": encoding.to_dict(),
                "label": training_set.label,
                "estimator": ref.path,
                "kind": ref.kind,
                "metric": ms.metric,
                "data_versions": data_versions,
                "run_id": run_id,
            }
        }
        info = log_native(tracker, run_id, ref, model, input_example=example, output_example=p_valid[:5], metadata=metadata)
    # the pinned inputs also go to the lineage table: `steward data vacuum` keeps every version a run read,
    # so `steward reproduce` keeps working after old files are cleaned up
    from steward.data.runs import record_input

    for inp in training_set.inputs:
        record_input(ws.metadata, run_id, str(inp))

    version: int | None = None
    card_path: Path | None = None
    rows = {"train": len(x_train), "validation": len(x_valid)}
    if register:
        _say(progress, f"registering {ms.name}")
        version, card_path = _register(
            ws,
            ms,
            ref,
            info=info,
            run_id=run_id,
            overall=overall,
            slices=slices,
            fairness=fairness,
            importance=importance,
            training_set=training_set,
            rows=rows,
            positive_rate={"train": float(y_train.mean()), "validation": float(y_valid.mean())},
            cut=cut,
            features=features,
            git=git.label,
            env_hash=env_hash,
            pred_hash=pred_hash,
            actor=actor,
        )
    outputs: dict[str, Any] = {"prediction_hash": pred_hash}
    if card_path is not None and version is not None:
        # link the entry to the exact card written for this version (the gate rewrites it later
        # and records the new hash on its own entry)
        from steward.governance.audit import file_ref
        from steward.registry.cards import card_paths

        outputs["card"] = file_ref(card_path, ws.spec.base_dir)
        outputs["card_json"] = file_ref(card_paths(ws, ms.name, version)[1], ws.spec.base_dir)
    ws.audit.append(
        "training.run",
        f"model:{ms.name}@{version}" if version is not None else f"run:{run_id}",
        actor=tags["steward.actor"],
        model=ms.name,
        inputs={"data_versions": data_versions},
        outputs=outputs,
        details={
            "run_id": run_id,
            "version": version,
            "estimator": ref.path,
            "metrics": overall,
            "git": git.label,
            "env_hash": env_hash,
            "reproduces": (run_tags or {}).get("steward.reproduces"),
        },
    )
    return TrainResult(
        run_id=run_id,
        model_name=ms.name,
        version=version,
        metrics=overall,
        slice_metrics=slices,
        fairness=fairness,
        card_path=card_path,
        prediction_hash=pred_hash,
        data_versions=data_versions,
        params=params,
        search=search_summary,
        rows=rows,
        feature_importance=importance,
    )


def _search(
    ws: Workspace,
    ms: ModelSpec,
    ref: EstimatorRef,
    params: dict[str, Any],
    train_df: pl.DataFrame,
    training_set: TrainingSet,
    encoding: FeatureEncoding,
    progress: Progress | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    from steward.training.search import SearchData, run_search

    # the inner split: the last part of the training period scores each trial
    fit_df, val_df, inner_cut = split_by_time(
        train_df, training_set.event_time, SplitSpec(validation_fraction=ms.split.validation_fraction)
    )
    data = SearchData(
        ref=ref,
        base_params=params,
        seed=ms.seed,
        metric=ms.metric,
        categorical=list(encoding.categorical),
        x_fit=encode(fit_df, encoding),
        y_fit=label_array(fit_df, training_set.label),
        x_val=encode(val_df, encoding),
        y_val=label_array(val_df, training_set.label),
    )
    _say(progress, f"searching {ms.search.n_trials} trials on {ms.search.engine} (inner validation from {inner_cut})")
    result = run_search(ms.search, data, storage_dir=ws.root / "ray_results")
    summary = {
        "engine": result.engine,
        "n_trials": len(result.trials),
        "best_score": result.best_score,
        "best_params": result.best_params,
        "inner_validation_from": inner_cut,
        "trials": result.trials,
    }
    return {**params, **result.best_params}, summary


def _register(
    ws: Workspace,
    ms: ModelSpec,
    ref: EstimatorRef,
    *,
    info: LoggedModel,
    run_id: str,
    overall: dict[str, float | None],
    slices: dict[str, Any],
    fairness: dict[str, Any] | None,
    importance: dict[str, Any],
    training_set: TrainingSet,
    rows: dict[str, int],
    positive_rate: dict[str, float],
    cut: str,
    features: list[str],
    git: str,
    env_hash: str,
    pred_hash: str,
    actor: str | None,
) -> tuple[int, Path]:
    from steward.registry.cards import log_card, write_card
    from steward.registry.loader import MANIFEST_TAG
    from steward.registry.manifest import build_manifest
    from steward.registry.versions import register_version

    with tempfile.TemporaryDirectory() as tmp:
        local = ws.model_registry.download_model(info.model_uri, Path(tmp))
        manifest = build_manifest(local)
    main = overall.get(ms.metric)
    tags = {
        MANIFEST_TAG: json.dumps(manifest, sort_keys=True),
        "steward.run_id": run_id,
        "steward.data_versions": json.dumps(training_set.data_versions, sort_keys=True),
        "steward.metric": ms.metric,
        "steward.metric_value": "" if main is None else repr(float(main)),
        "steward.prediction_hash": pred_hash,
    }
    version = register_version(ws, name=ms.name, model_uri=info.model_uri, run_id=run_id, tags=tags, actor=actor)
    ws.tracker.log_dict(run_id, {"model": ms.name, "version": version, "files": manifest}, f"manifests/v{version}.json")
    card = {
        "model": ms.name,
        "version": version,
        "run_id": run_id,
        "created_at": utcnow(),
        "estimator": ref.path,
        "task": ms.task,
        "intended_use": ms.intended_use,
        "training_data": {
            "inputs": [str(r) for r in training_set.inputs],
            "data_versions": training_set.data_versions,
            "rows": rows,
            "validation_from": cut,
            "label": training_set.label,
            "positive_rate": positive_rate,
            "features": features,
        },
        "metrics": {"main": ms.metric, "overall": overall},
        "slices": slices,
        "fairness": fairness,
        "feature_importance": importance,
        "limitations": list(ms.limitations),
        "reproducibility": {"git": git, "env_hash": env_hash, "prediction_hash": pred_hash, "data_versions": training_set.data_versions},
        "gate": None,
    }
    card_path = write_card(ws, card)
    log_card(ws, run_id, ms.name, version)
    return version, card_path


def _default_builder(ws: Workspace, *, pins: dict[str, int] | None = None) -> TrainingSet:
    from steward.features import build_training_set  # type: ignore[attr-defined]

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
