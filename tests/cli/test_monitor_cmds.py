"""``steward monitor``: profile, run, report and rules through the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from steward.cli.app import app
from steward.errors import NotFound
from steward.spec import load_spec
from steward.workspace import Workspace

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide(wide_console: None) -> None:
    """Every test here reads Rich tables: print them wide."""


@pytest.fixture
def project(project_dir: Path) -> Path:
    spec = project_dir / "steward.yaml"
    spec.write_text(spec.read_text() + "monitoring:\n  window: {by: time, size: 1d}\n  reference_sample: 1000\n")
    ws = Workspace(load_spec(project_dir))
    rng = np.random.default_rng(0)
    n = 2000
    ws.lake.write(
        "gold.train",
        pl.DataFrame(
            {"x": rng.normal(size=n), "c": rng.choice(["a", "b"], size=n), "score": rng.random(n), "y": rng.integers(0, 2, size=n)}
        ),
    )
    now = datetime.now(UTC)
    m = 1200
    ws.lake.write(
        "logs.predictions",
        pl.DataFrame(
            {
                "request_id": [f"r{i}" for i in range(m)],
                "model": ["m"] * m,
                "version": ["1"] * m,
                "variant": ["champion"] * m,
                "ts": [now - timedelta(hours=20) + timedelta(seconds=50 * i) for i in range(m)],
                "x": rng.normal(1.5, 1.0, size=m),  # drifted
                "c": rng.choice(["a", "b"], size=m),
                "prediction": rng.random(m),
                "latency_ms": rng.uniform(1, 5, size=m),
            }
        ).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC"))),
    )
    ws.close()
    return project_dir


def _run(project: Path, *args: str) -> object:
    return runner.invoke(app, ["--spec", str(project), "monitor", *args])


def test_profile_run_report_rules(project: Path, tmp_path: Path) -> None:
    r = _run(project, "profile", "--table", "gold.train", "--model", "m", "--version", "1", "--features", "x,c", "--categorical", "c",
             "--prediction-col", "score", "--target", "y >= 1", "--out", str(tmp_path / "p.json"))  # fmt: skip
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    assert "2000 rows" in r.output and (tmp_path / "p.json").exists()  # type: ignore[attr-defined]
    assert (project / ".steward" / "monitoring" / "profiles" / "m" / "1.json").exists()

    r = _run(project, "run", "--model", "m", "--json")
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    verdicts = json.loads(r.output)  # type: ignore[attr-defined]
    assert len(verdicts) == 1 and verdicts[0]["n_rows"] == 1200
    x_psi = next(c for c in verdicts[0]["checks"] if c["policy"] == "feature_drift" and c["column"] == "x")
    assert x_psi["status"] == "breach" and x_psi["value"] > 0.2
    assert {a["policy"] for a in verdicts[0]["actions"]} == {"feature_drift"}

    r = _run(project, "run", "--fail-on-breach")
    assert r.exit_code == 3  # type: ignore[attr-defined]
    assert "breach" in r.output and "action alert" in r.output  # type: ignore[attr-defined]

    r = _run(project, "report", "--out", str(tmp_path / "rep"))
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    assert "data:image/png;base64," in (tmp_path / "rep" / "monitor-report.html").read_text()
    assert len(json.loads((tmp_path / "rep" / "monitor-report.json").read_text())["models"]["m"]["history"]) == 2

    r = _run(project, "rules")
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    rules = yaml.safe_load(r.output)["groups"][0]["rules"]  # type: ignore[attr-defined]
    assert any(rule["annotations"]["runbook_url"] == "docs/runbooks/feature-drift.md" for rule in rules)


def test_run_unknown_model_is_a_steward_error(project: Path) -> None:
    r = _run(project, "run", "--model", "nope")
    assert isinstance(r.exception, NotFound)  # type: ignore[attr-defined]
