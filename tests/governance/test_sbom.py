from __future__ import annotations

import json
from pathlib import Path

from steward.governance.sbom import find_lock, generate_sbom, read_lock

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


def test_sbom_check_catches_a_drifted_lock(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("polars==2.1.0\nrich==15.0.0\n")
    report = generate_sbom(lock, tmp_path / "out.json", pyproject=REPO / "pyproject.toml")
    assert report.ok
    assert report.components == 2
    parsed = read_lock(lock)
    assert parsed["polars"] == ("2.1.0", [])
