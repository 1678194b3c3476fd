"""The :class:`~steward.backends.base.ModelRegistry` on MLflow's model registry (aliases only: stages are deprecated)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from steward.backends.base import ModelMetadata, ModelVersionInfo, SignatureField
from steward.backends.mlflow_store import MlflowConnection, sqlite_path
from steward.errors import NotFound

__all__ = ["MlflowModelRegistry"]

logger = logging.getLogger(__name__)

_MAX_RESULTS = 1000


def _iso(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _version_info(mv: Any, aliases: tuple[str, ...] | None = None) -> ModelVersionInfo:
    return ModelVersionInfo(
        name=str(mv.name),
        version=int(mv.version),
        run_id=str(mv.run_id) if mv.run_id else None,
        source=str(mv.source or ""),
        tags={str(k): str(v) for k, v in (mv.tags or {}).items()},
        aliases=tuple(sorted(str(a) for a in (mv.aliases or ()))) if aliases is None else aliases,
        created_at=_iso(mv.creation_timestamp),
    )


class MlflowModelRegistry(MlflowConnection):
    """Registered models in the MLflow store at ``uri`` (SQLite by default, PostgreSQL or a tracking server to scale out)."""

    def exists(self) -> bool:
        """An embedded SQLite store exists once something was tracked; a server-backed store always does."""
        path = sqlite_path(self.uri)
        return path is None or path.exists()

    def register_version(self, name: str, model_uri: str, *, tags: Mapping[str, str]) -> ModelVersionInfo:
        """Register ``model_uri`` (a logged model) as the next version of ``name``."""
        with self._fluent(f"registering a version of model {name!r}") as mlflow:
            mv = mlflow.register_model(model_uri, name, await_registration_for=0, tags=dict(tags))
        return _version_info(mv)

    def get_version(self, name: str, version: int) -> ModelVersionInfo:
        """One version (NotFound when absent)."""
        with self._errors(f"reading model {name!r} version {version}"):
            return _version_info(self.client.get_model_version(name, str(version)))

    def list_models(self) -> list[str]:
        """Every registered model name, sorted."""
        with self._errors("listing registered models"):
            return sorted(str(m.name) for m in self.client.search_registered_models(max_results=_MAX_RESULTS))

    def list_versions(self, name: str) -> list[ModelVersionInfo]:
        """Every version of ``name``, newest first, with aliases (NotFound when there is no such model)."""
        c = self.client
        with self._errors(f"listing versions of model {name!r}"):
            # search results do not always carry aliases; the registered model does (and says whether it exists)
            by_version: dict[int, list[str]] = {}
            for alias, v in (c.get_registered_model(name).aliases or {}).items():
                by_version.setdefault(int(v), []).append(str(alias))
            found = c.search_model_versions(f"name = '{name}'", max_results=_MAX_RESULTS)
        out = [_version_info(mv, tuple(sorted(by_version.get(int(mv.version), [])))) for mv in found]
        return sorted(out, key=lambda v: -v.version)

    def aliases(self, name: str) -> dict[str, int]:
        """``alias -> version`` of ``name``; empty when the model does not exist."""
        try:
            with self._errors(f"reading the aliases of model {name!r}"):
                rm = self.client.get_registered_model(name)
        except NotFound:
            return {}
        return {str(k): int(v) for k, v in (rm.aliases or {}).items()}

    def get_alias(self, name: str, alias: str) -> int | None:
        """The version ``alias`` points at, or None (unset alias or no such model).

        Read from the registered model's alias map: MLflow reports an unset alias as an invalid
        parameter, which must not be confused with a bad model name.
        """
        return self.aliases(name).get(alias)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``."""
        with self._errors(f"setting alias {alias!r} of model {name!r} to version {version}"):
            self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` from ``name``."""
        with self._errors(f"removing alias {alias!r} of model {name!r}"):
            self.client.delete_registered_model_alias(name, alias)

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        """Set tag ``key`` on one version."""
        with self._errors(f"tagging model {name!r} version {version}"):
            self.client.set_model_version_tag(name, str(version), key, value)

    def download_model(self, model_uri: str, dst: Path) -> Path:
        """Download a model's files under ``dst``."""
        self.client  # noqa: B018 - open (and migrate) the store first
        with self._errors(f"downloading model files from {model_uri}"):
            import mlflow.artifacts

            local = mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri, dst_path=str(dst), tracking_uri=self.uri, registry_uri=self.uri
            )
        return Path(local)

    def model_metadata(self, local_dir: Path) -> ModelMetadata:
        """The custom metadata and column signature in a downloaded model's ``MLmodel`` file."""
        with self._errors(f"reading the model descriptor in {local_dir}"):
            from mlflow.models import Model

            model = Model.load(str(local_dir))
        inputs = None
        schema = model.signature.inputs if model.signature is not None else None
        if schema is not None and schema.has_input_names():
            inputs = tuple(
                SignatureField(str(col.name), getattr(col.type, "name", str(col.type)).lower(), bool(getattr(col, "required", True)))
                for col in schema.inputs
            )
        flavors = {str(k): dict(v) for k, v in (model.flavors or {}).items()}
        return ModelMetadata(metadata=dict(model.metadata or {}), flavors=flavors, inputs=inputs)
