"""Fixtures for registry tests: the synthetic training sets and a shared MLflow tracking DB."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# the synthetic flights helpers live with the training tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))


@pytest.fixture(scope="session")
def shared_tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite MLflow store shared by tests; each test uses its own project (experiment) and model name."""
    path: Path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return f"sqlite:///{path}"
