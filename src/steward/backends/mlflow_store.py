"""MLflow as Steward's model registry and run tracker: where it stores things, and the client both share.

:func:`tracking_uri` is the store the spec names (SQLite under the state root by
default, PostgreSQL when ``storage.tracking_uri`` says so); :func:`artifact_location`
is where the project's experiment keeps artifacts (``ROOT/mlartifacts`` or
``storage.artifact_root``). The implementations, :class:`~steward.backends.mlflow_registry.MlflowModelRegistry`
and :class:`~steward.backends.mlflow_tracker.MlflowRunTracker`, subclass :class:`MlflowConnection`:
a client opened on first use, and every call wrapped in the one error translation
(:mod:`steward.backends.mlflow_errors`).

MLflow is imported lazily (it is heavy), and only by the ``steward.backends.mlflow_*`` modules.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steward.backends.mlflow_errors import mlflow_errors

if TYPE_CHECKING:
    from steward.spec import Spec

__all__ = ["MlflowConnection", "artifact_location", "quiet_env", "tracking_uri"]

logger = logging.getLogger(__name__)

_QUIET = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
}

# MLflow's fluent API (active runs, artifact downloads by ``runs:/`` and ``models:/`` URIs) reads
# process-wide URIs: set them and use them under one lock so two stores never interleave.
_GLOBAL_URI_LOCK = threading.RLock()


def quiet_env() -> None:
    """Turn off telemetry and progress bars before MLflow or Ray is imported."""
    for key, value in _QUIET.items():
        os.environ.setdefault(key, value)


def tracking_uri(spec: Spec) -> str:
    """The MLflow tracking (and registry) URI: ``storage.tracking_uri`` or ``sqlite:///ROOT/mlflow.db``.

    ``postgresql://`` URLs are rewritten to SQLAlchemy's psycopg 3 driver, the
    only PostgreSQL driver Steward installs; a bare path is a SQLite file relative to ``steward.yaml``.
    """
    uri = spec.storage.tracking_uri
    if not uri:
        return f"sqlite:///{spec.root / 'mlflow.db'}"
    for prefix in ("postgresql://", "postgres://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg://" + uri[len(prefix) :]
    if "://" not in uri:
        return f"sqlite:///{spec.resolve(uri)}"
    return uri


def artifact_location(spec: Spec) -> str:
    """Where the project's experiment stores artifacts, as a URI (nothing is created here)."""
    root = spec.storage.artifact_root
    if root and "://" in root:
        return root
    path = spec.resolve(root) if root else spec.root / "mlartifacts"
    return path.as_uri()


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URI, else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


class MlflowConnection:
    """An ``MlflowClient`` on one tracking/registry URI, opened on first use.

    Args:
        uri: The tracking and registry store (see :func:`tracking_uri`).
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The ``MlflowClient`` (created, and an embedded store's schema migrated, on first use)."""
        with self._lock:
            if self._client is None:
                with self._errors("opening the store"):
                    self._client = self._open_client()
            return self._client

    def _open_client(self) -> Any:
        quiet_env()
        path = sqlite_path(self.uri)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def _errors(self, what: str) -> Any:
        return mlflow_errors(what, uri=self.uri)

    @contextmanager
    def _fluent(self, what: str) -> Iterator[Any]:
        """Point MLflow's process-wide URIs at this store for a block of fluent calls; yields the ``mlflow`` module."""
        self.client  # noqa: B018 - open (and migrate) the store first
        with _GLOBAL_URI_LOCK, self._errors(what):
            import mlflow

            mlflow.set_tracking_uri(self.uri)
            mlflow.set_registry_uri(self.uri)
            yield mlflow

    def close(self) -> None:
        """Forget the client (MLflow pools its database connections per URI, process-wide)."""
        with self._lock:
            self._client = None
