"""A CycloneDX SBOM of the locked environment, and a check of the installed one.

We hand the lock file to ``cyclonedx-py`` (the CycloneDX project's own
generator) instead of writing SBOM JSON by hand, then check the result against
the lock: every pinned package must appear with the same version, and every
hash the lock carries must appear on its component.

That only proves the SBOM describes the lock. Whether the lock describes what
actually runs is a separate check (:func:`check_environment`): the installed
distributions of the running interpreter (``importlib.metadata``) are compared
with the pins, reporting packages installed but not locked, locked but not
installed, and installed at another version. Wheel hashes cannot be checked
there (an installed distribution does not keep the hash of the wheel it came from).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steward.errors import StewardError

__all__ = ["EnvironmentDrift", "SbomReport", "check_environment", "find_lock", "generate_sbom", "installed_distributions", "read_lock"]

logger = logging.getLogger(__name__)

_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
_MARKER = re.compile(r";\s*([^\\#]+)")
# installers that a virtualenv brings along; compared only when the lock pins them
_INSTALLERS = frozenset({"pip", "setuptools", "wheel"})


@dataclass
class EnvironmentDrift:
    """How the running environment differs from a lock (see :func:`check_environment`)."""

    not_locked: list[str] = field(default_factory=list)
    not_installed: list[str] = field(default_factory=list)
    version_mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every installed distribution is pinned at its installed version, and every pin installed."""
        return not self.not_locked and not self.not_installed and not self.version_mismatches

    @property
    def problems(self) -> list[str]:
        """One readable line per difference."""
        return (
            [f"{n}: installed {v}, not in the lock" for n, v in (x.split("==", 1) for x in self.not_locked)]
            + [f"{n}: locked {v}, not installed" for n, v in (x.split("==", 1) for x in self.not_installed)]
            + self.version_mismatches
        )


@dataclass
class SbomReport:
    """What :func:`generate_sbom` produced."""

    path: Path
    components: int
    with_hashes: int
    missing_from_sbom: list[str] = field(default_factory=list)
    version_mismatches: list[str] = field(default_factory=list)
    environment: EnvironmentDrift | None = None

    @property
    def ok(self) -> bool:
        """Whether the SBOM covers the lock exactly and (when checked) the environment matches it."""
        env_ok = self.environment is None or self.environment.ok
        return not self.missing_from_sbom and not self.version_mismatches and env_ok

    @property
    def problems(self) -> list[str]:
        """Every problem found, SBOM against lock first, then environment against lock."""
        env = self.environment.problems if self.environment is not None else []
        return [*self.missing_from_sbom, *self.version_mismatches, *env]


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


def _lock_markers(lock: Path) -> dict[str, str]:
    """Environment markers of pins that have one (``pkg==1.0 ; sys_platform == "win32"``)."""
    out: dict[str, str] = {}
    for raw in lock.read_text().splitlines():
        m = _PIN.match(raw.strip())
        marker = _MARKER.search(raw) if m else None
        if m and marker:
            out[_norm(m.group(1))] = marker.group(1).strip()
    return out


def _applies(marker: str | None) -> bool:
    """Whether a pin's marker holds here (pins without one always apply)."""
    if not marker:
        return True
    try:
        from packaging.markers import Marker
    except ImportError:  # pragma: no cover - packaging comes with every locked environment
        return True
    return bool(Marker(marker).evaluate())


def installed_distributions() -> dict[str, str]:
    """``{normalised name: version}`` of the running interpreter's distributions.

    When a name is installed twice (an editable checkout beside a wheel), the first
    on ``sys.path`` wins, as it does for imports.
    """
    out: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(_norm(name), dist.version)
    return out


def check_environment(lock: Path, installed: Mapping[str, str] | None = None, *, ignore: Iterable[str] = ("steward",)) -> EnvironmentDrift:
    """Compare the installed distributions with the pins of ``lock``.

    Args:
        lock: The pip lock file.
        installed: ``{name: version}`` to check (default: :func:`installed_distributions`).
        ignore: Names never compared (the project itself, installed editable from the checkout).
            ``pip``, ``setuptools`` and ``wheel`` are also ignored unless the lock pins them.
    """
    pins = read_lock(lock)
    markers = _lock_markers(lock)
    have = {_norm(k): v for k, v in (installed_distributions() if installed is None else installed).items()}
    skip = {_norm(n) for n in ignore} | (_INSTALLERS - set(pins))
    drift = EnvironmentDrift()
    for name in sorted(have.keys() - skip):
        pin = pins.get(name)
        if pin is None:
            drift.not_locked.append(f"{name}=={have[name]}")
        elif pin[0] != have[name]:
            drift.version_mismatches.append(f"{name}: lock {pin[0]}, installed {have[name]}")
    for name in sorted(pins.keys() - have.keys() - skip):
        if _applies(markers.get(name)):
            drift.not_installed.append(f"{name}=={pins[name][0]}")
    return drift


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


def generate_sbom(lock: Path, output: Path, *, pyproject: Path | None = None, check_installed: bool = True) -> SbomReport:
    """Write a CycloneDX 1.6 JSON SBOM for ``lock``, check it covers every pin, and check the environment.

    Args:
        lock: The pip lock file (``name==version`` lines, optional ``--hash``es).
        output: Where to write the SBOM JSON.
        pyproject: The root component's ``pyproject.toml`` (default: beside the lock).
        check_installed: Also compare the running environment with the lock (:func:`check_environment`).
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
    if check_installed:
        report.environment = check_environment(lock)
    return report
