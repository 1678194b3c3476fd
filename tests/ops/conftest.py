"""Service-layer test fixtures: the training and serving helpers are shared with tests/training and tests/serving."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

for helpers in ("training", "serving", "agent", "loop"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / helpers))


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the server's loop)."""
    return "asyncio"


@pytest.fixture(scope="session")
def shared_tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite MLflow store shared by the tests here; each test uses its own project and model name."""
    path: Path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return f"sqlite:///{path}"
