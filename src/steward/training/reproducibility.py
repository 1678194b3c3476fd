"""The reproducibility triple recorded on every training run (the code and environment parts).

* code: the git SHA of the project directory and whether the tree is dirty;
* data: every training input pinned as ``table@version`` (see :class:`~steward.features.TrainingSet`);
* environment: sha256 of the repo's ``requirements.lock`` (or, when there is
  none, of every installed distribution's ``name==version``).

Where runs are tracked is the run tracker's business (:attr:`steward.workspace.Workspace.tracker`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GitInfo", "environment_hash", "git_info"]


@dataclass(frozen=True)
class GitInfo:
    """The code part of the reproducibility triple."""

    sha: str | None
    dirty: bool | None

    @property
    def label(self) -> str:
        """``abc123`` / ``abc123+dirty`` / ``none`` (not a git repository)."""
        if self.sha is None:
            return "none"
        return f"{self.sha}+dirty" if self.dirty else self.sha


def git_info(path: Path) -> GitInfo:
    """The git SHA and dirty flag of the repository holding ``path`` (``None`` if not a repo)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return GitInfo(None, None)
    status = git("status", "--porcelain", "--untracked-files=no")
    return GitInfo(sha, bool(status) if status is not None else None)


def _find_lock(starts: list[Path]) -> Path | None:
    for start in starts:
        for d in (start, *start.parents):
            candidate = d / "requirements.lock"
            if candidate.is_file():
                return candidate
    return None


def environment_hash(base_dir: Path) -> tuple[str, str]:
    """sha256 of the locked environment and what was hashed (``requirements.lock`` path or ``installed``).

    Looks for ``requirements.lock`` upwards from the project directory, then from
    Steward's own source tree; otherwise hashes the sorted ``name==version`` of
    every installed distribution (what ``pip freeze`` would print).
    """
    lock = _find_lock([base_dir, Path(__file__).resolve().parent])
    if lock is not None:
        return hashlib.sha256(lock.read_bytes()).hexdigest(), str(lock)
    lines = sorted({f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in importlib.metadata.distributions() if d.metadata["Name"]})
    return hashlib.sha256("\n".join(lines).encode()).hexdigest(), "installed"
