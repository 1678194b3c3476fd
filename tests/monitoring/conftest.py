"""Fixtures of the monitoring tests: a workspace with a reference profile for flights v1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from monitor_helpers import MONITORING, NOW, flights_like

from steward.monitoring import build_reference_profile, store_profile
from steward.spec import load_spec
from steward.workspace import Workspace


@pytest.fixture
def monitor_ws(project_dir: Path) -> Iterator[Workspace]:
    """A workspace with a stored reference profile for flights v1 and the silver.flights labels table."""
    spec_file = project_dir / "steward.yaml"
    spec_file.write_text(spec_file.read_text() + MONITORING)
    ws = Workspace(load_spec(project_dir))
    train = flights_like(4000, seed=1, start=NOW - timedelta(days=60), span=timedelta(days=30))
    prof = build_reference_profile(
        train, ["dep_delay", "carrier", "origin"], ["carrier", "origin"], train.get_column("score").to_numpy(), train.get_column("late").to_numpy(),
        sample_size=2000,
    )  # fmt: skip
    store_profile(ws, prof, "flights", "1")
    yield ws
    ws.close()
