from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from steward.cli.app import app
from steward.spec import load_spec

runner = CliRunner()


def test_init_creates_valid_project_and_refuses_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "proj"
    res = runner.invoke(app, ["init", str(target), "--example", "flights"])
    assert res.exit_code == 0, res.output
    spec = load_spec(target)
    assert spec.project == "flights"
    assert (target / "contracts").is_dir()
    again = runner.invoke(app, ["init", str(target)])
    assert again.exit_code != 0


def test_help_is_fast_and_lists_commands() -> None:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "steward", "--help"], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - t0
    assert "init" in out.stdout
    assert "demo" in out.stdout
    # lazy imports: no heavy library is imported to print help
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from steward.cli.app import app; print(sorted(m for m in ('mlflow','torch','lancedb','deltalake','polars','lightgbm') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"
    assert elapsed < 5  # generous bound for a loaded CI box; the real budget (< 1 s) is checked by the import probe


def test_errors_are_one_red_line_and_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "steward.yaml"
    bad.write_text("project: x\nsourcez: {}\n")
    out = subprocess.run([sys.executable, "-m", "steward", "--spec", str(bad), "pipeline", "run"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "error[spec.invalid]" in out.stderr
    assert "did you mean 'sources'" in out.stderr
