"""API test fixtures: the serving helpers are shared with tests/serving."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the server's loop)."""
    return "asyncio"


sys.path.insert(0, str(Path(__file__).resolve().parent))
