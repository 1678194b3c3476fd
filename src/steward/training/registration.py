"""Registering a trained run: the version (alias ``challenger``) with its artifact manifest, and its model card."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steward._primitives import utcnow
from steward.modeling import EstimatorRef
from steward.registry.cards import log_card, write_card
from steward.registry.loader import MANIFEST_TAG
from steward.registry.manifest import build_manifest
from steward.registry.versions import register_version
from steward.training.evaluation import Evaluation, PreparedData

if TYPE_CHECKING:
    from steward.backends.base import LoggedModel
    from steward.features.training_set import TrainingSet
    from steward.spec import ModelSpec
    from steward.workspace import Workspace

__all__ = ["register_run"]

logger = logging.getLogger(__name__)


def _label_summary(data: PreparedData) -> dict[str, Any]:
    """``{key: {"train": ..., "validation": ...}}`` for each key of the task's label summary (binary: positive_rate)."""
    train = data.task.label_summary(data.y_train, data.classes)
    valid = data.task.label_summary(data.y_valid, data.classes)
    return {k: {"train": train[k], "validation": valid.get(k)} for k in train}


def register_run(
    ws: Workspace,
    ms: ModelSpec,
    ref: EstimatorRef,
    *,
    info: LoggedModel,
    run_id: str,
    evaluation: Evaluation,
    importance: dict[str, Any],
    training_set: TrainingSet,
    data: PreparedData,
    git: str,
    env_hash: str,
    actor: str | None,
) -> tuple[int, Path]:
    """Register the run's model (SHA-256 manifest in its tags) and write its card; return ``(version, card path)``."""
    pred_hash = evaluation.prediction_hash
    with tempfile.TemporaryDirectory() as tmp:
        local = ws.model_registry.download_model(info.model_uri, Path(tmp))
        manifest = build_manifest(local)
    main = evaluation.overall.get(ms.metric)
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
        "classes": [str(c) for c in data.classes],
        "intended_use": ms.intended_use,
        "training_data": {
            "inputs": [str(r) for r in training_set.inputs],
            "data_versions": training_set.data_versions,
            "rows": data.rows,
            "validation_from": data.cut,
            "label": training_set.label,
            **_label_summary(data),
            "features": data.features,
        },
        "metrics": {"main": ms.metric, "overall": evaluation.overall, **({"details": evaluation.details} if evaluation.details else {})},
        "slices": evaluation.slices,
        "fairness": evaluation.fairness,
        "feature_importance": importance,
        "limitations": list(ms.limitations),
        "reproducibility": {"git": git, "env_hash": env_hash, "prediction_hash": pred_hash, "data_versions": training_set.data_versions},
        "gate": None,
    }
    card_path = write_card(ws, card)
    log_card(ws, run_id, ms.name, version)
    return version, card_path
