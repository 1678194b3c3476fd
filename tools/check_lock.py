"""Check that an environment is exactly its lock, installed without a resolver.

Usage::

    python tools/check_lock.py [--lock requirements.lock] [--python .venv/bin/python] [--dry-run]

It fails (exit 1, one line per problem) when:

* a lock line is not pinned with ``==`` or carries no ``--hash``;
* the environment holds a distribution the lock does not, lacks one it does, or has another version;
* a requirement steward declares (core or any extra in the lock) is not met by the locked version;
* with ``--dry-run``: ``pip install --no-deps --dry-run --report`` over the lock would install anything
  but the lock's own pins (pip never resolves, so it must pick exactly those files).

``make install`` runs it after ``pip check``; ``make lock`` runs it on a clean venv after re-pinning.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Installed but never locked: the installer itself and the project (installed with -e).
NOT_LOCKED = {"pip", "steward"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str, problems: list[str] | None = None) -> dict[str, str]:
    """The lock's pins as ``{normalized name: version}``; malformed lines go to ``problems``."""
    pins: dict[str, str] = {}
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        entry = entry.split("#", 1)[0].strip() if entry.lstrip().startswith("#") else entry.strip()
        if not entry:
            continue
        requirement = entry.split()[0]
        name, sep, version = requirement.partition("==")
        if not sep or not version or any(c in version for c in "<>=!~*,"):
            if problems is not None:
                problems.append(f"not pinned with ==: {requirement}")
            continue
        if "--hash=sha256:" not in entry and problems is not None:
            problems.append(f"no --hash for {requirement}")
        pins[norm(name.split("[")[0])] = version
    return pins


def installed(python: Path) -> dict[str, str]:
    code = "import importlib.metadata as m, json; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout
    return {norm(k): v for k, v in json.loads(out).items()}


def declared_requirements(extras: set[str]) -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra, items in project.get("optional-dependencies", {}).items():
        if extra in extras:
            reqs += [r for r in items if not r.startswith("steward[")]
    return reqs


def dry_run(lock: Path, python: Path) -> dict[str, str]:
    cmd = [
        str(python),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--require-hashes",
        "--dry-run",
        "--ignore-installed",
        "--report",
        "-",
        "-r",
        str(lock),
    ]
    report = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return {norm(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}


def check_environment(lock: Path, python: Path, *, with_dry_run: bool = False, project: bool = True) -> list[str]:
    """Every way the environment at ``python`` differs from ``lock`` (empty when it is exactly the lock)."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    problems: list[str] = []
    pins = parse_lock(lock.read_text(), problems)
    have = {k: v for k, v in installed(python).items() if k not in NOT_LOCKED}
    for name in sorted(set(pins) | set(have)):
        if name not in have:
            problems.append(f"locked but not installed: {name}=={pins[name]}")
        elif name not in pins:
            problems.append(f"installed but not locked: {name}=={have[name]}")
        elif Version(have[name]) != Version(pins[name]):
            problems.append(f"{name}: installed {have[name]}, locked {pins[name]}")
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("optional-dependencies", {}))
    for text in declared_requirements(extras) if project else []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = pins.get(norm(req.name))
        if version is None:
            if lock.name == "requirements.lock":
                problems.append(f"pyproject.toml declares {text} but the lock has no {req.name}")
        elif not req.specifier.contains(Version(version), prereleases=True):
            problems.append(f"pyproject.toml declares {text} but the lock pins {req.name}=={version}")
    if with_dry_run:
        chosen = dry_run(lock, python)
        if chosen != pins:
            diff = sorted(set(chosen.items()) ^ set(pins.items()))
            problems.append(f"pip --no-deps --dry-run would install other than the lock: {diff[:10]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lock", type=Path, default=REPO / "requirements.lock")
    parser.add_argument("--python", type=Path, default=REPO / ".venv" / "bin" / "python")
    parser.add_argument("--dry-run", action="store_true", help="also ask pip what it would install from the lock")
    parser.add_argument("--no-project", action="store_true", help="a peer's lock: steward is not installed on top")
    args = parser.parse_args(argv)
    problems = check_environment(args.lock, args.python, with_dry_run=args.dry_run, project=not args.no_project)
    for p in problems:
        print(f"check_lock: {p}", file=sys.stderr)
    if not problems:
        print(f"check_lock: {args.python} is exactly {args.lock.name}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
