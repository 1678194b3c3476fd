from __future__ import annotations

import json
from pathlib import Path

from steward.governance.sbom import check_environment, find_lock, generate_sbom, read_lock

REPO = Path(__file__).resolve().parents[2]


def test_sbom_covers_every_locked_package(tmp_path: Path) -> None:
    lock = find_lock(REPO)
    report = generate_sbom(lock, tmp_path / "sbom.json")
    assert report.ok, report.missing_from_sbom + report.version_mismatches
    pins = read_lock(lock)
    assert report.components >= len(pins) > 50
    assert report.with_hashes == len(pins)  # every pin carries its sha256 into the SBOM
    bom = json.loads((tmp_path / "sbom.json").read_text())
    assert bom["bomFormat"] == "CycloneDX"
    names = {c["name"].lower().replace("_", "-") for c in bom["components"]}
    assert {"mlflow", "deltalake", "polars", "fastapi"} <= names
    assert bom["metadata"]["component"]["name"] == "steward"


def _drifted_lock(tmp_path: Path) -> Path:
    """The real lock with polars pinned at a version that is not installed, rich dropped, and a pin never installed."""
    text = find_lock(REPO).read_text()
    installed = read_lock(find_lock(REPO))["polars"][0]
    assert f"polars=={installed} " in text and "\nrich==" in text
    lines = text.replace(f"polars=={installed} ", "polars==0.0.1 ").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rich=="))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" "))
    lines[start:end] = ["steward-no-such-package==1.0"]
    lock = tmp_path / "requirements.lock"
    lock.write_text("\n".join(lines) + "\n")
    return lock


def test_environment_check_catches_a_drifted_lock(tmp_path: Path) -> None:
    lock = _drifted_lock(tmp_path)
    drift = check_environment(lock)  # the running environment: the .venv installed from the real lock
    assert not drift.ok
    rich = read_lock(find_lock(REPO))["rich"][0]
    assert drift.not_locked == [f"rich=={rich}"]
    assert drift.not_installed == ["steward-no-such-package==1.0"]
    assert len(drift.version_mismatches) == 1
    assert drift.version_mismatches[0].startswith("polars: lock 0.0.1, installed ")


def test_sbom_check_catches_a_drifted_lock(tmp_path: Path) -> None:
    # a small lock: cyclonedx-py covers it exactly, the environment does not match it
    polars = read_lock(find_lock(REPO))["polars"][0]
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"polars=={polars}\nrich==0.0.1\nsteward-no-such-package==1.0\n")
    report = generate_sbom(lock, tmp_path / "out.json", pyproject=REPO / "pyproject.toml")
    assert report.components == 3 and not report.missing_from_sbom and not report.version_mismatches
    assert not report.ok
    env = report.environment
    assert env is not None
    assert env.not_installed == ["steward-no-such-package==1.0"]
    assert [m.split(":")[0] for m in env.version_mismatches] == ["rich"]
    assert "polars" not in {n.split("==")[0] for n in env.not_locked}
    assert "numpy" in {n.split("==")[0] for n in env.not_locked}
    assert "steward-no-such-package: locked 1.0, not installed" in report.problems
    assert not generate_sbom(lock, tmp_path / "out2.json", check_installed=False).environment


def test_environment_check_ignores_the_project_and_unpinned_installers(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text('numpy==2.0.0\nsetuptools==80.0\nwinonly==1.0 ; sys_platform == "nonexistent-os"\n')
    installed = {"numpy": "2.0.0", "steward": "0.1.0", "pip": "23.2.1", "wheel": "0.43", "setuptools": "79.0"}
    drift = check_environment(lock, installed)
    # setuptools is pinned, so it is compared; pip and wheel are not; the marker excludes winonly here
    assert drift.version_mismatches == ["setuptools: lock 80.0, installed 79.0"]
    assert drift.not_locked == [] and drift.not_installed == []
    assert check_environment(lock, {**installed, "Some_Pkg": "1"}).not_locked == ["some-pkg==1"]
