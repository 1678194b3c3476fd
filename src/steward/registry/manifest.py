"""SHA-256 manifests of model artifact directories, checked before anything is loaded.

The manifest is taken right after the model is logged and stored in the
registry (model-version tag ``steward.manifest``) and with the run (artifact
``manifests/vN.json``). Serving downloads the artifacts, verifies every file
against it, and only then loads the model.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from steward.errors import DataError

__all__ = ["IGNORED_FILES", "build_manifest", "sha256_file", "verify_artifacts"]

logger = logging.getLogger(__name__)

# Written by MLflow itself when a registered version is downloaded; not model content.
IGNORED_FILES = frozenset({"registered_model_meta"})


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_manifest(local_dir: Path) -> dict[str, str]:
    """``{relative/posix/path: sha256}`` of every file under ``local_dir``."""
    out: dict[str, str] = {}
    for p in sorted(local_dir.rglob("*")):
        if p.is_file():
            rel = p.relative_to(local_dir).as_posix()
            if rel not in IGNORED_FILES:
                out[rel] = sha256_file(p)
    return out


def verify_artifacts(local_dir: Path, manifest: dict[str, str]) -> None:
    """Check that ``local_dir`` holds exactly the files of ``manifest`` with the same hashes.

    Raises:
        DataError: (code ``registry.artifact_mismatch``) naming every missing,
            changed or unexpected file.
    """
    if not manifest:
        raise DataError(
            "the model has no artifact manifest", code="registry.artifact_mismatch", hint="re-register the model with 'steward train'"
        )
    actual = build_manifest(Path(local_dir))
    missing = sorted(set(manifest) - set(actual))
    unexpected = sorted(set(actual) - set(manifest))
    changed = sorted(k for k in set(manifest) & set(actual) if manifest[k] != actual[k])
    if missing or unexpected or changed:
        parts = []
        if changed:
            parts.append(f"changed: {', '.join(changed)}")
        if missing:
            parts.append(f"missing: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected: {', '.join(unexpected)}")
        raise DataError(
            f"model artifacts in {local_dir} do not match their manifest ({'; '.join(parts)})",
            code="registry.artifact_mismatch",
            hint="the artifact store was modified after registration; do not load this model",
            details={"changed": changed, "missing": missing, "unexpected": unexpected},
        )
