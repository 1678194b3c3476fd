"""A CycloneDX SBOM of the locked environment.

We hand the lock file to ``cyclonedx-py`` (the CycloneDX project's own
generator) instead of writing SBOM JSON by hand, then check the result against
the lock: every pinned package must appear with the same version, and every
hash the lock carries must appear on its component.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steward.errors import StewardError

__all__ = ["SbomReport", "find_lock", "generate_sbom", "read_lock"]

logger = logging.getLogger(__name__)

_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass
class SbomReport:
    """What :func:`generate_sbom` produced."""

    path: Path
    components: int
    with_hashes: int
    missing_from_sbom: list[str] = field(default_factory=list)
    version_mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the SBOM covers the lock exactly."""
        return not self.missing_from_sbom and not self.version_mismatches


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """Parse a pip lock file: ``{normalised name: (version, [sha256, ...])}``."""
    out: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for raw in lock.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _PIN.match(line)
        if m:
            current = _norm(m.group(1))
            out[current] = (m.group(2), [])
        if current:
            out[current][1].extend(_HASH.findall(line))
    return out


def _hashes(component: dict[str, Any]) -> set[str]:
    """SHA-256 hashes on a component or its distribution references (where cyclonedx-py puts lock hashes)."""
    found = {h.get("content", "") for h in component.get("hashes", [])}
    for ref in component.get("externalReferences", []):
        found |= {h.get("content", "") for h in ref.get("hashes", [])}
    return found - {""}


def find_lock(start: Path | None = None) -> Path:
    """The nearest ``requirements.lock`` upwards from ``start`` (default: the package's repo)."""
    here = (start or Path(__file__)).resolve()
    for d in (here, *here.parents):
        cand = d / "requirements.lock"
        if cand.exists():
            return cand
    raise StewardError("no requirements.lock found", code="sbom.no_lock", hint="run from the Steward repository or pass --lock")


def generate_sbom(lock: Path, output: Path, *, pyproject: Path | None = None) -> SbomReport:
    """Write a CycloneDX 1.6 JSON SBOM for ``lock`` and check it covers every pin.

    Args:
        lock: The pip lock file (``name==version`` lines, optional ``--hash``es).
        output: Where to write the SBOM JSON.
        pyproject: The root component's ``pyproject.toml`` (default: beside the lock).
    """
    pyproject = pyproject or lock.parent / "pyproject.toml"
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_out = Path(tmp) / "sbom.json"
        cmd = [sys.executable, "-m", "cyclonedx_py", "requirements", str(lock), "--of", "JSON", "-o", str(tmp_out), "--output-reproducible"]
        if pyproject.exists():
            cmd += ["--pyproject", str(pyproject)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not tmp_out.exists():
            raise StewardError(f"cyclonedx-py failed: {proc.stderr.strip()[-500:]}", code="sbom.failed")
        bom: dict[str, Any] = json.loads(tmp_out.read_text())
        output.write_text(json.dumps(bom, indent=2))
    comps = {_norm(c["name"]): c for c in bom.get("components", [])}
    report = SbomReport(output, len(comps), sum(1 for c in comps.values() if _hashes(c)))
    for name, (version, hashes) in read_lock(lock).items():
        comp = comps.get(name)
        if comp is None:
            report.missing_from_sbom.append(name)
            continue
        if comp.get("version") != version:
            report.version_mismatches.append(f"{name}: lock {version}, sbom {comp.get('version')}")
        have = _hashes(comp)
        if hashes and not set(hashes) <= have:
            report.version_mismatches.append(f"{name}: hashes differ from the lock")
    return report
