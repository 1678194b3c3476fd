"""MLflow tracking and registry wiring, plus the reproducibility triple.

MLflow is imported lazily (it is heavy). :func:`configure` points MLflow at the
tracking and registry URI the spec names (SQLite under the state root by
default, PostgreSQL when ``storage.tracking_uri`` says so) and makes sure the
project's experiment stores artifacts under ``ROOT/mlartifacts`` (or
``storage.artifact_root``).

The reproducibility triple recorded on every run:

* code: the git SHA of the project directory and whether the tree is dirty;
* data: every training input pinned as ``table@version``;
* environment: sha256 of the repo's ``requirements.lock`` (or, when there is
  none, of every installed distribution's ``name==version``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steward._extras import optional_import
from steward.errors import BackendUnavailable

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = [
    "GitInfo",
    "artifact_location",
    "client",
    "configure",
    "environment_hash",
    "experiment_id",
    "git_info",
    "quiet_env",
    "tracking_uri",
]

logger = logging.getLogger(__name__)

_QUIET = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def quiet_env() -> None:
    """Turn off telemetry and progress bars before MLflow or Ray is imported."""
    for key, value in _QUIET.items():
        os.environ.setdefault(key, value)


def tracking_uri(ws: Workspace) -> str:
    """The MLflow tracking URI: ``storage.tracking_uri`` or ``sqlite:///ROOT/mlflow.db``.

    ``postgresql://`` URLs are rewritten to SQLAlchemy's psycopg 3 driver, the
    only PostgreSQL driver Steward installs.
    """
    uri = ws.spec.storage.tracking_uri
    if not uri:
        return f"sqlite:///{ws.root / 'mlflow.db'}"
    for prefix in ("postgresql://", "postgres://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg://" + uri[len(prefix) :]
    if "://" not in uri:
        # a bare path means a local SQLite file, relative to steward.yaml
        return f"sqlite:///{ws.spec.resolve(uri)}"
    return uri


def artifact_location(ws: Workspace) -> str:
    """Where the project's experiment stores artifacts (a URI)."""
    root = ws.spec.storage.artifact_root
    if root and "://" in root:
        if root.startswith("s3://"):
            # MLflow's S3 artifact store imports boto3 only when it first writes; fail here, naming the extra
            optional_import("boto3", extra="s3", needed_for="storage.artifact_root: s3://")
        return root
    path = ws.spec.resolve(root) if root else ws.root / "mlartifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def configure(ws: Workspace) -> str:
    """Point MLflow's fluent API at the workspace's tracking and registry URI; return it."""
    quiet_env()
    import mlflow

    uri = tracking_uri(ws)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def client(ws: Workspace) -> Any:
    """An ``MlflowClient`` for the workspace (tracking and registry on the same store)."""
    uri = configure(ws)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(ws: Workspace) -> str:
    """The id of the project's experiment (named after the project), created on first use."""
    c = client(ws)
    name = ws.spec.project
    try:
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        return str(c.create_experiment(name, artifact_location=artifact_location(ws)))
    except Exception as exc:
        if type(exc).__name__ in ("OperationalError", "MlflowException") and "connect" in str(exc).lower():
            raise BackendUnavailable(
                f"cannot reach the MLflow tracking store at {tracking_uri(ws)}: {str(exc).splitlines()[0]}",
                hint="start the database or fix storage.tracking_uri",
            ) from exc
        # two processes may race to create the experiment: the loser reads it back
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)


@dataclass(frozen=True)
class GitInfo:
    """The code part of the reproducibility triple."""

    sha: str | None
    dirty: bool | None

    @property
    def label(self) -> str:
        """``abc123`` / ``abc123+dirty`` / ``none`` (not a git repository)."""
        if self.sha is None:
            return "none"
        return f"{self.sha}+dirty" if self.dirty else self.sha


def git_info(path: Path) -> GitInfo:
    """The git SHA and dirty flag of the repository holding ``path`` (``None`` if not a repo)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return GitInfo(None, None)
    status = git("status", "--porcelain", "--untracked-files=no")
    return GitInfo(sha, bool(status) if status is not None else None)


def _find_lock(starts: list[Path]) -> Path | None:
    for start in starts:
        for d in (start, *start.parents):
            candidate = d / "requirements.lock"
            if candidate.is_file():
                return candidate
    return None


def environment_hash(base_dir: Path) -> tuple[str, str]:
    """sha256 of the locked environment and what was hashed (``requirements.lock`` path or ``installed``).

    Looks for ``requirements.lock`` upwards from the project directory, then from
    Steward's own source tree; otherwise hashes the sorted ``name==version`` of
    every installed distribution (what ``pip freeze`` would print).
    """
    lock = _find_lock([base_dir, Path(__file__).resolve().parent])
    if lock is not None:
        return hashlib.sha256(lock.read_bytes()).hexdigest(), str(lock)
    lines = sorted({f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in importlib.metadata.distributions() if d.metadata["Name"]})
    return hashlib.sha256("\n".join(lines).encode()).hexdigest(), "installed"
