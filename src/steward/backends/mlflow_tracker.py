"""The :class:`~steward.backends.base.RunTracker` on MLflow tracking: experiments, runs, artifacts and logged models."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from steward._extras import optional_import
from steward.backends.base import LoggedModel, ModelFlavor, RunInfo
from steward.backends.mlflow_store import MlflowConnection
from steward.errors import Conflict, ValidationFailed

__all__ = ["MlflowRunTracker"]

logger = logging.getLogger(__name__)


class MlflowRunTracker(MlflowConnection):
    """Runs in the MLflow store at ``uri``; new experiments keep their artifacts at ``artifact_location``.

    Args:
        uri: The tracking store (see :func:`~steward.backends.mlflow_store.tracking_uri`).
        artifact_location: Artifact root URI for experiments created here (``file://...`` or ``s3://...``).
    """

    def __init__(self, uri: str, artifact_location: str) -> None:
        super().__init__(uri)
        self.artifact_location = artifact_location

    def _prepare_artifact_location(self) -> str:
        loc = self.artifact_location
        if loc.startswith("s3://"):
            # MLflow's S3 artifact store imports boto3 only when it first writes: fail here, naming the extra
            optional_import("boto3", extra="s3", needed_for="storage.artifact_root: s3://")
        elif loc.startswith("file://"):
            Path(loc.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        return loc

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created on first use (the loser of a creation race reads it back)."""
        c = self.client
        with self._errors(f"opening experiment {name!r}"):
            exp = c.get_experiment_by_name(name)
            if exp is not None:
                return str(exp.experiment_id)
            location = self._prepare_artifact_location()
            try:
                return str(c.create_experiment(name, artifact_location=location))
            except Exception:
                exp = c.get_experiment_by_name(name)
                if exp is None:
                    raise
                return str(exp.experiment_id)

    def start_run(self, experiment_id: str, *, run_name: str, tags: Mapping[str, str]) -> str:
        """Start a run as this thread's active MLflow run (so :meth:`log_model` can log into it)."""
        with self._fluent(f"starting a run in experiment {experiment_id}") as mlflow:
            run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags))
        return str(run.info.run_id)

    def end_run(self, run_id: str, *, failed: bool = False) -> None:
        """Finish the run (``FAILED`` when ``failed``)."""
        status = "FAILED" if failed else "FINISHED"
        with self._fluent(f"ending run {run_id}") as mlflow:
            active = mlflow.active_run()
            if active is not None and active.info.run_id == run_id:
                mlflow.end_run(status)
            else:
                self.client.set_terminated(run_id, status)

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        """Record parameters."""
        from mlflow.entities import Param

        with self._errors(f"logging params of run {run_id}"):
            self.client.log_batch(run_id, params=[Param(str(k), str(v)) for k, v in params.items()], synchronous=True)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Record metric values (step 0, now)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with self._errors(f"logging metrics of run {run_id}"):
            self.client.log_batch(run_id, metrics=[Metric(str(k), float(v), now, 0) for k, v in metrics.items()], synchronous=True)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set run tags."""
        from mlflow.entities import RunTag

        with self._errors(f"tagging run {run_id}"):
            self.client.log_batch(run_id, tags=[RunTag(str(k), str(v)) for k, v in tags.items()], synchronous=True)

    def log_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
        """Store ``data`` as an artifact."""
        with self._errors(f"logging {artifact_file} in run {run_id}"):
            self.client.log_dict(run_id, dict(data), artifact_file)

    def log_artifact(self, run_id: str, local_path: Path, artifact_path: str | None = None) -> None:
        """Copy a local file into the run's artifacts."""
        with self._errors(f"logging {Path(local_path).name} in run {run_id}"):
            self.client.log_artifact(run_id, str(local_path), artifact_path=artifact_path)

    def log_model(
        self,
        run_id: str,
        model: Any,
        *,
        flavor: ModelFlavor,
        input_example: Any,
        output_example: Any,
        pip_requirements: Sequence[str],
        metadata: Mapping[str, Any],
        trusted_types: Sequence[str] = (),
    ) -> LoggedModel:
        """Log ``model`` in its native flavour (LightGBM text, or scikit-learn as skops: never a pickle) into run ``run_id``.

        Raises:
            Conflict: ``run_id`` is not this thread's active run (MLflow logs models into the active run only).
            ValidationFailed: an unknown flavour.
        """
        if flavor not in ("lightgbm", "sklearn"):
            raise ValidationFailed(f"unknown model flavour {flavor!r}", details={"errors": ["flavor"]})
        with self._fluent(f"logging the model of run {run_id}") as mlflow:
            active = mlflow.active_run()
            if active is None or active.info.run_id != run_id:
                raise Conflict(f"run {run_id} is not the active run of this thread", hint="log the model between start_run and end_run")
            from mlflow.models import infer_signature

            common: dict[str, Any] = {
                "name": "model",
                "signature": infer_signature(input_example, output_example),
                "input_example": input_example,
                "pip_requirements": list(pip_requirements),
                "metadata": dict(metadata),
            }
            if flavor == "lightgbm":
                info = mlflow.lightgbm.log_model(model, **common)
            else:
                info = mlflow.sklearn.log_model(model, serialization_format="skops", skops_trusted_types=list(trusted_types), **common)
        return LoggedModel(model_uri=str(info.model_uri))

    def get_run(self, run_id: str) -> RunInfo:
        """One run (NotFound when absent)."""
        with self._errors(f"reading run {run_id}"):
            run = self.client.get_run(run_id)
        return RunInfo(
            run_id=str(run.info.run_id),
            experiment_id=str(run.info.experiment_id),
            status=str(run.info.status),
            run_name=str(run.info.run_name or ""),
            tags={str(k): str(v) for k, v in run.data.tags.items()},
            params={str(k): str(v) for k, v in run.data.params.items()},
            metrics={str(k): float(v) for k, v in run.data.metrics.items()},
        )

    def download_artifact(self, run_id: str, artifact_path: str, dst: Path) -> Path:
        """Download one artifact of a run under ``dst`` (NotFound when the run or the artifact is absent)."""
        self.client  # noqa: B018 - open (and migrate) the store first
        with self._errors(f"downloading {artifact_path} of run {run_id}"):
            import mlflow.artifacts

            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact_path, dst_path=str(dst), tracking_uri=self.uri, registry_uri=self.uri
            )
        return Path(local)

    def load_dict(self, run_id: str, artifact_file: str) -> dict[str, Any]:
        """A JSON artifact of a run, parsed."""
        with tempfile.TemporaryDirectory(prefix="steward-artifact-") as tmp:
            local = self.download_artifact(run_id, artifact_file, Path(tmp))
            data = json.loads(local.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValidationFailed(f"{artifact_file} of run {run_id} is not a JSON object", details={"errors": [artifact_file]})
        return data
