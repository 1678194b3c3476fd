"""Re-pin the locks: the one place a resolver runs, and the proof that each lock installs without one.

Usage (``make lock`` / ``make lock-peers``)::

    python tools/lock.py                   # the project's locks: keep every current pin, add only what is new
    python tools/lock.py --upgrade         # re-resolve them against today's index
    python tools/lock.py --peers           # the benchmark peers' locks (benchmarks/requirements-*.lock)
    python tools/lock.py --verify [--peers] # only prove the existing locks install without a resolver
    python tools/lock.py --only NAME       # one lock (a file name from the tables below)

Each lock is complete: ``pip install --no-deps --require-hashes -r LOCK`` followed by ``pip check``
gives the same environment whatever pip the venv has, because pip never resolves. Without
``--upgrade`` the current lock is passed as constraints, so an upstream release published since the
last lock cannot move a pin that nobody asked to move.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

from check_lock import parse_lock  # noqa: E402
from hash_lock import main as hash_lock  # noqa: E402

PY = "python3.11"


@dataclass(frozen=True)
class Lock:
    """One lock file: what it must hold, and whether this project is installed on top of it."""

    path: str
    requirements: tuple[str, ...]
    header: str
    project: bool = True
    # pinned "within" another lock: that lock's versions are always the constraints, so the image
    # runs exactly the versions the test suite ran
    within: str | None = None


PROJECT_LOCKS = (
    Lock("requirements.lock", (".[all,bench,dev]",), "Every dependency of steward[all,bench,dev] (what `make install` installs)."),
    Lock(
        "requirements-serve.lock",
        (".[postgres,redis,s3,ray]",),
        "The server image (deploy/Dockerfile): steward[postgres,redis,s3,ray], no torch or LLM stack.",
        within="requirements.lock",
    ),
)
PEER_LOCKS = (
    Lock(
        "benchmarks/requirements-feast.lock", ("feast[duckdb]==0.67.0", "pandas<3"), "Feast, for benchmarks/pit_vs_feast.py.", project=False
    ),
    Lock(
        "benchmarks/requirements-evidently.lock",
        ("evidently==0.7.23", "pandas<3"),
        "Evidently, for benchmarks/drift_vs_evidently.py.",
        project=False,
    ),
)


def run(*cmd: str | Path) -> None:
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=REPO)


def venv(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    run(PY, "-m", "venv", path)
    return path / "bin" / "python"


def pin(lock: Lock, upgrade: bool, work: Path) -> None:
    target = REPO / lock.path
    python = venv(work / "resolve")
    pip: list[str | Path] = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    base = REPO / (lock.within or lock.path)
    if base.exists() and (not upgrade or lock.within):
        constraints = work / "constraints.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in parse_lock(base.read_text()).items()))
        pip += ["-c", constraints]
    requirements = [r if not r.startswith(".") else f"-e{r}" for r in lock.requirements]
    if lock.project:
        # the build backend too: `make install` builds the project with --no-build-isolation, from the lock
        requirements = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"] + requirements
    run(*pip, *requirements)
    frozen = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--all", "--exclude-editable"], check=True, capture_output=True, text=True
    ).stdout
    pins = [line for line in frozen.splitlines() if line and not re.match(r"^(steward|pip)==", line)]
    plain = work / Path(lock.path).name
    plain.write_text("\n".join(pins) + "\n")
    dists = work / "dists"
    shutil.rmtree(dists, ignore_errors=True)
    run(python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps", "-r", plain, "-d", dists)
    if hash_lock(str(plain), str(dists)) != 0:
        raise SystemExit(f"could not hash every pin of {lock.path}")
    header = f"# {lock.header}\n# Pinned with sha256 hashes by `make lock` (tools/lock.py). Install with no resolver:\n"
    header += f"#   pip install --no-deps --require-hashes -r {lock.path} && pip check\n"
    target.write_text(header + plain.read_text())
    print(f"wrote {lock.path}: {len(pins)} pins", flush=True)


def verify(lock: Lock, work: Path) -> None:
    """Install the lock exactly as `make install` does, in a clean venv, and check the result."""
    python = venv(work / "verify")
    quiet = ["--quiet", "--disable-pip-version-check"]
    run(python, "-m", "pip", "install", *quiet, "--no-deps", "--require-hashes", "-r", REPO / lock.path)
    if lock.project:
        run(python, "-m", "pip", "install", *quiet, "--no-deps", "--no-build-isolation", "-e", REPO)
    run(python, "-m", "pip", "check")
    # the venv's own python runs the check: it has `packaging` from the lock, whatever the host has
    check = [python, REPO / "tools" / "check_lock.py", "--lock", REPO / lock.path, "--python", python, "--dry-run"]
    run(*check, *([] if lock.project else ["--no-project"]))
    print(f"verified {lock.path}: installs with --no-deps --require-hashes, pip check clean", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upgrade", action="store_true", help="re-resolve every pin against today's index")
    parser.add_argument("--verify", action="store_true", help="only verify the existing locks")
    parser.add_argument("--peers", action="store_true", help="the benchmark peers' locks instead of the project's")
    parser.add_argument("--only", help="one lock file (path relative to the repo)")
    args = parser.parse_args(argv)
    locks = PEER_LOCKS if args.peers else PROJECT_LOCKS
    if args.only:
        locks = tuple(lk for lk in PROJECT_LOCKS + PEER_LOCKS if lk.path == args.only)
        if not locks:
            parser.error(f"no lock {args.only!r}; known: {', '.join(lk.path for lk in PROJECT_LOCKS + PEER_LOCKS)}")
    with tempfile.TemporaryDirectory(prefix="steward-lock-") as tmp:
        for lock in locks:
            if not args.verify:
                pin(lock, args.upgrade, Path(tmp))
            verify(lock, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
