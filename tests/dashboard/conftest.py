"""Dashboard fixtures: one project seeded with demo data through the stage libraries, shared by the page and browser tests."""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard_seed import ADMIN_KEY, VIEWER_KEY, new_project, seed_all

from steward.api.auth import ApiKeys
from steward.workspace import Workspace


@pytest.fixture(scope="session")
def mlflow_template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty MLflow database (creating one takes ~10-20 s on a busy machine).

    Kept in pytest's cache between runs when the cache plugin is on; otherwise made once per session.
    """
    version = importlib.metadata.version("mlflow")
    cache = getattr(request.config, "cache", None)
    folder = Path(cache.mkdir(f"steward-dashboard-mlflow-{version}")) if cache is not None else tmp_path_factory.mktemp("mlflow-cache")
    cached = folder / "mlflow.db"
    if not cached.exists():
        ws = new_project(tmp_path_factory.mktemp("mlflow-template"))
        ws.model_registry.list_models()  # creates and migrates the schema
        ws.close()
        tmp = cached.with_suffix(".tmp")
        shutil.copy(ws.root / "mlflow.db", tmp)
        tmp.replace(cached)
    return cached


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Workspace:
    """A project with a registered model, a rollout, monitoring history, LLM spend, traces and audit entries."""
    return seed_all(tmp_path_factory.mktemp("dashdemo"), mlflow_template)


@pytest.fixture
def keys() -> ApiKeys:
    """A viewer key and an admin key."""
    return ApiKeys({VIEWER_KEY: ("dash-viewer", "viewer"), ADMIN_KEY: ("dash-admin", "admin")})
