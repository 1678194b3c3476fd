"""``import steward``: a curated, lazily loaded front door with a version."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import steward

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("polars", "mlflow", "lightgbm", "fastapi", "sklearn", "pyarrow", "deltalake")


def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    return done.stdout.strip()


def _pyproject_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def test_every_name_of_the_front_door_resolves_and_is_listed() -> None:
    assert len(steward.__all__) >= 12
    for name in steward.__all__:
        assert getattr(steward, name) is not None, name
    assert set(steward.__all__) <= set(dir(steward))
    assert "importlib" not in dir(steward) and "_LAZY" not in dir(steward)  # helpers stay out of the listing
    assert steward.train is steward.ops.train and steward.open_workspace.__module__ == "steward.workspace"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        steward.trian  # type: ignore[attr-defined]  # noqa: B018
    from steward import ops  # a subpackage still imports through the package

    assert ops.promote is steward.promote


def test_import_steward_does_not_import_the_heavy_libraries() -> None:
    loaded = _python(f"import sys, steward; print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    assert loaded == ""
    # the first use of a name imports what it needs
    loaded = _python("import sys, steward; steward.run_pipeline; print('polars' in sys.modules)")
    assert loaded == "True"


def test_version_is_the_pyproject_version() -> None:
    assert _python("import steward; print(steward.__version__)") == _pyproject_version()


def test_version_of_an_uninstalled_tree_comes_from_its_pyproject(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert steward._version() == _pyproject_version()
