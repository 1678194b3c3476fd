"""Peer environments for benchmarks: one venv per peer, built from its own hashed lock, never resolved.

Peers that need other versions than Steward's (Feast and Evidently want ``pandas<3``; LiteLLM pins its
own stack) each get ``.venv-bench-NAME/`` at the repo root, installed exactly as ``make install`` installs
Steward: ``pip install --no-deps --require-hashes -r LOCK`` then ``pip check``. The venv is reused until
its lock changes (a sha256 stamp). Re-pin a peer lock as ``benchmarks/README.md`` describes.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def ensure_peer_venv(name: str, lock: Path, what: str, *, root: Path = REPO) -> Path:
    """The python of ``.venv-bench-NAME`` built from ``lock`` (created on first use, rebuilt when the lock changes).

    Args:
        name: Short peer name (``feast``, ``evidently``, ``litellm``).
        lock: The peer's hashed lock file.
        what: What the venv holds, for the one line printed while it is built.
        root: Where the venv goes (the repo root).
    """
    venv = root / f".venv-bench-{name}"
    python = venv / "bin" / "python"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    stamp = venv / ".lock-sha256"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return python
    print(f"creating {venv.name} from {lock.name} ({what}; first run only) ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)  # a changed lock starts clean: nothing left over from the old pins
    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
    quiet = ["--quiet", "--disable-pip-version-check"]
    subprocess.run([str(python), "-m", "pip", "install", *quiet, "--no-deps", "--require-hashes", "-r", str(lock)], check=True)
    subprocess.run([str(python), "-m", "pip", "check"], check=True)
    stamp.write_text(digest)
    return python
