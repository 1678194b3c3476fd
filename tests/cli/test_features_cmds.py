from __future__ import annotations

import importlib
import sys
from pathlib import Path

from typer.testing import CliRunner

from steward.cli.app import app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "features"))
from features_data import make_flights, make_planes, make_weather, write_project

runner = CliRunner(env={"COLUMNS": "300"})


def test_features_build_materialize_list(tmp_path: Path) -> None:
    ws = write_project(tmp_path)
    ws.lake.write("silver.flights", make_flights(n=80))
    ws.lake.write("silver.weather", make_weather(days=8))
    ws.lake.write("silver.planes", make_planes())
    ws.close()
    importlib.import_module("steward.cli.app")._state.pop("console", None)  # a fresh console picks up the wide COLUMNS
    spec = ["--spec", str(tmp_path / "steward.yaml")]

    res = runner.invoke(app, [*spec, "features", "list"])
    assert res.exit_code == 0, res.output
    assert "carrier_late" in res.output and "carrier_late_1d" in res.output

    res = runner.invoke(app, [*spec, "features", "build"])
    assert res.exit_code == 0, res.output
    assert "gold.route_late@0" in res.output and "silver.flights@0" in res.output
    res = runner.invoke(app, [*spec, "features", "build", "--table", "plane_age"])
    assert res.exit_code == 0 and "unchanged" in res.output

    res = runner.invoke(app, [*spec, "features", "materialize", "--as-of", "2013-03-05T12:00:00Z"])
    assert res.exit_code == 0, res.output
    assert "2013-03-05T12:00:00+00:00" in res.output and "route_late" in res.output
    assert (tmp_path / ".steward" / "online.db").exists()

    res = runner.invoke(app, [*spec, "features", "list"])
    assert res.exit_code == 0 and "gold version" in res.output


def test_bad_feature_table_is_one_error(tmp_path: Path) -> None:
    write_project(tmp_path)
    res = runner.invoke(app, ["--spec", str(tmp_path / "steward.yaml"), "features", "build", "--table", "nope"])
    assert res.exit_code != 0
    assert "nope" in str(res.exception) or "nope" in res.output
