"""Run logging: one training run's configuration, tags, params, metrics, artifacts and model.

Everything a run logs goes through the workspace's run tracker (MLflow): the
configuration :func:`steward.training.reproduce` reads back (:data:`CONFIG_ARTIFACT`),
the reproducibility tags (git SHA, pinned data versions, environment lock hash,
validation prediction hash), metrics overall and per slice, the validation rows the
gate scores (:data:`steward.registry.VALIDATION_ARTIFACT`), the reference profile
monitoring compares windows with, and the model in its native flavour. The pinned
inputs also go to the lineage table, and the finished run to the audit trail.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from steward._primitives import resolve_actor, utcnow
from steward.backends.base import tracked_run
from steward.data.runs import record_input
from steward.governance.audit import file_ref
from steward.modeling import METRICS, EstimatorRef, log_native
from steward.monitoring import build_reference_profile
from steward.registry import VALIDATION_ARTIFACT
from steward.registry.cards import card_paths
from steward.training.evaluation import Evaluation, PreparedData
from steward.training.reproducibility import GitInfo

if TYPE_CHECKING:
    from steward.backends.base import LoggedModel
    from steward.features.training_set import TrainingSet
    from steward.spec import ModelSpec
    from steward.workspace import Workspace

__all__ = ["CONFIG_ARTIFACT", "audit_run", "log_run", "run_config", "tags_for_run"]

logger = logging.getLogger(__name__)

CONFIG_ARTIFACT = "steward/train_config.json"
"""The run's configuration, enough for :func:`steward.training.reproduce` to retrain it."""


def _flat_params(params: dict[str, Any]) -> dict[str, str]:
    return {str(k)[:250]: str(v)[:6000] for k, v in params.items()}


def _safe_metric_key(*parts: str) -> str:
    keep = "".join(c if c.isalnum() or c in "_-. /" else "_" for c in ".".join(parts))
    return keep[:250]


def run_config(ms: ModelSpec, ref: EstimatorRef, params: dict[str, Any], data: PreparedData, training_set: TrainingSet) -> dict[str, Any]:
    """The configuration :func:`steward.training.reproduce` retrains from (stored as :data:`CONFIG_ARTIFACT`)."""
    return {
        "model_name": ms.name,
        "estimator": ref.path,
        "params": params,
        "seed": ms.seed,
        "metric": ms.metric,
        "task": ms.task,
        "split": {"validation_from": data.cut, "requested": ms.split.model_dump()},
        "features": data.features,
        "categorical": data.cat_features,
        "label": training_set.label,
        "event_time": training_set.event_time,
        "entity_keys": list(training_set.entity_keys),
        "slices": list(ms.slices),
        "fairness": ms.fairness.model_dump() if ms.fairness else None,
        "inputs": [str(r) for r in training_set.inputs],
        "data_versions": training_set.data_versions,
    }


def tags_for_run(
    ms: ModelSpec,
    ref: EstimatorRef,
    training_set: TrainingSet,
    *,
    git: GitInfo,
    env_hash: str,
    env_source: str,
    pred_hash: str,
    cut: str,
    actor: str | None,
    extra: dict[str, str] | None,
) -> dict[str, str]:
    """The run's tags: what was trained, from which code, data and environment, by whom (``extra`` last)."""
    return {
        "steward.model_name": ms.name,
        "steward.estimator": ref.path,
        "steward.git_sha": git.sha or "none",
        "steward.git_dirty": "unknown" if git.dirty is None else str(git.dirty).lower(),
        "steward.data_versions": json.dumps(training_set.data_versions, sort_keys=True),
        "steward.inputs": ",".join(str(r) for r in training_set.inputs),
        "steward.env_hash": env_hash,
        "steward.env_source": env_source,
        "steward.prediction_hash": pred_hash,
        "steward.validation_from": cut,
        "steward.actor": resolve_actor(actor),
        **(extra or {}),
    }


def log_run(
    ws: Workspace,
    ms: ModelSpec,
    ref: EstimatorRef,
    training_set: TrainingSet,
    data: PreparedData,
    model: Any,
    *,
    params: dict[str, Any],
    evaluation: Evaluation,
    importance: dict[str, Any],
    search_summary: dict[str, Any] | None,
    fit_seconds: float,
    config: dict[str, Any],
    tags: dict[str, str],
) -> tuple[str, LoggedModel]:
    """Track one training run and log its model; record its pinned inputs in the lineage table.

    Returns:
        ``(run_id, logged model)``.
    """
    tracker = ws.tracker
    exp_id = tracker.experiment_id(ws.spec.project)
    cut = data.cut
    with tracked_run(tracker, exp_id, run_name=f"{ms.name}-{utcnow()[:19]}", tags=tags) as run_id:
        tracker.log_params(run_id, _flat_params({**params, "seed": ms.seed, "estimator": ref.path, "validation_from": cut}))
        metrics: dict[str, float] = {f"valid_{k}": v for k, v in evaluation.overall.items() if v is not None}
        metrics.update({f"train_{k}": v for k, v in evaluation.train.items() if v is not None})
        metrics.update({"rows_train": float(len(data.x_train)), "rows_validation": float(len(data.x_valid)), "fit_seconds": fit_seconds})
        for col, groups in evaluation.slices.items():
            for g, e in groups.items():
                for m in METRICS:
                    if e.get(m) is not None:
                        metrics[_safe_metric_key("slice", col, g, m)] = float(e[m])
        fairness = evaluation.fairness
        if fairness and fairness["gap"] is not None:
            metrics[_safe_metric_key("fairness", fairness["column"], fairness["metric"], "gap")] = float(fairness["gap"])
        tracker.log_metrics(run_id, metrics)
        tracker.log_dict(run_id, config, CONFIG_ARTIFACT)
        tracker.log_dict(
            run_id,
            {"overall": evaluation.overall, "train": evaluation.train, "slices": evaluation.slices, "details": evaluation.details},
            "metrics/metrics.json",
        )
        if fairness is not None:
            tracker.log_dict(run_id, fairness, "metrics/fairness.json")
        tracker.log_dict(run_id, importance, "explanations/feature_importance.json")
        # The reference profile monitoring compares every serving window against (never re-reading training data).
        profile = build_reference_profile(
            data.train_df,
            data.features,
            data.categorical,
            prediction=data.task.profile_output(np.asarray(evaluation.p_train)),
            target=np.asarray(data.y_train),
            seed=ms.seed,
            meta={"source": "training"},
        )
        tracker.log_dict(run_id, profile.to_dict(), "reference_profile.json")
        if search_summary is not None:
            tracker.log_dict(run_id, search_summary, "search/trials.json")
        _log_validation_rows(ws, run_id, ms, training_set, data)
        metadata = {
            "steward": {
                "encoding": data.encoding.to_dict(),
                "label": training_set.label,
                "estimator": ref.path,
                "kind": ref.kind,
                "metric": ms.metric,
                "task": ms.task,
                "classes": list(data.classes),
                "data_versions": training_set.data_versions,
                "run_id": run_id,
            }
        }
        example = data.x_valid.head(5)
        info = log_native(tracker, run_id, ref, model, input_example=example, output_example=evaluation.p_valid[:5], metadata=metadata)
    # the pinned inputs also go to the lineage table: `steward data vacuum` keeps every version a run read,
    # so `steward reproduce` keeps working after old files are cleaned up
    for inp in training_set.inputs:
        record_input(ws.metadata, run_id, str(inp))
    return run_id, info


def _log_validation_rows(ws: Workspace, run_id: str, ms: ModelSpec, training_set: TrainingSet, data: PreparedData) -> None:
    """Store the validation rows (features, label, time, slices, keys) where the gate reads them."""
    keep = list(dict.fromkeys([*data.features, training_set.label, training_set.event_time, *ms.slices, *training_set.entity_keys]))
    if ms.fairness:
        keep.append(ms.fairness.column)
    keep = [c for c in dict.fromkeys(keep) if c in data.valid_df.columns]
    where = PurePosixPath(VALIDATION_ARTIFACT)
    with tempfile.TemporaryDirectory() as tmp:
        vpath = Path(tmp) / where.name
        data.valid_df.select(keep).write_parquet(vpath)
        ws.tracker.log_artifact(run_id, vpath, artifact_path=str(where.parent))


def audit_run(
    ws: Workspace,
    ms: ModelSpec,
    ref: EstimatorRef,
    *,
    run_id: str,
    version: int | None,
    card_path: Path | None,
    tags: dict[str, str],
    data_versions: dict[str, int],
    evaluation: Evaluation,
    git: str,
    env_hash: str,
) -> None:
    """Append the ``training.run`` entry, linked to the exact card written for the version (when registered)."""
    outputs: dict[str, Any] = {"prediction_hash": evaluation.prediction_hash}
    if card_path is not None and version is not None:
        # link the entry to the exact card written for this version (the gate rewrites it later
        # and records the new hash on its own entry)
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
            "metrics": evaluation.overall,
            "git": git,
            "env_hash": env_hash,
            "reproduces": tags.get("steward.reproduces"),
        },
    )
