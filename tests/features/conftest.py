"""Fixtures for the features tests (data helpers live in features_data.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from features_data import make_flights, make_planes, make_weather, write_project

from steward.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    w = write_project(tmp_path)
    w.lake.write("silver.flights", make_flights(), partition_by=["_date"])
    w.lake.write("silver.weather", make_weather(), partition_by=["_date"])
    w.lake.write("silver.planes", make_planes())
    yield w
    w.close()
