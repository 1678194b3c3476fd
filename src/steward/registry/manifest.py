"""SHA-256 manifests of model artifact directories, optionally HMAC-signed, checked before anything is loaded.

The manifest is taken right after the model is logged and stored in the
registry (model-version tag ``steward.manifest``) and with the run (artifact
``manifests/vN.json``). Serving downloads the artifacts, verifies every file
against it, and only then loads the model.

The manifest tag itself lives in the tracking database, so whoever can edit that
database could rewrite hashes to match a tampered artifact. When the environment
variable ``STEWARD_MANIFEST_KEY`` is set, registration also writes an HMAC-SHA256 of
the canonical manifest (tag ``steward.manifest_sig``) and loading refuses a version
whose signature is missing or wrong. Versions registered before a key existed have no
signature: they are refused too, unless ``STEWARD_MANIFEST_ALLOW_UNSIGNED=1`` (a
documented, temporary switch while they are retrained or re-signed).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from steward._primitives import canonical_json
from steward.errors import ArtifactRejected

__all__ = [
    "ALLOW_UNSIGNED_ENV",
    "IGNORED_FILES",
    "KEY_ENV",
    "SIGNATURE_TAG",
    "build_manifest",
    "manifest_key",
    "sha256_file",
    "sign_manifest",
    "verify_artifacts",
    "verify_signature",
]

logger = logging.getLogger(__name__)

# Written by MLflow itself when a registered version is downloaded; not model content.
IGNORED_FILES = frozenset({"registered_model_meta"})

KEY_ENV = "STEWARD_MANIFEST_KEY"
"""Environment variable holding the manifest signing key (never read from steward.yaml: the key is a secret)."""
ALLOW_UNSIGNED_ENV = "STEWARD_MANIFEST_ALLOW_UNSIGNED"
"""Set to ``1`` to load versions without a signature while a key is configured (wrong signatures are always refused)."""
SIGNATURE_TAG = "steward.manifest_sig"
_SIG_PREFIX = "hmac-sha256:"


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


def manifest_key() -> bytes | None:
    """The signing key from ``$STEWARD_MANIFEST_KEY`` (None when unset or empty)."""
    key = os.environ.get(KEY_ENV, "")
    return key.encode() if key else None


def sign_manifest(name: str, manifest: Mapping[str, str], key: bytes) -> str:
    """``hmac-sha256:HEX`` over the canonical JSON of the model name and its manifest.

    The name is signed too, so a signed manifest cannot be copied onto another model.
    """
    payload = canonical_json({"model": name, "files": dict(manifest)}).encode()
    return _SIG_PREFIX + hmac.new(key, payload, hashlib.sha256).hexdigest()


def verify_signature(label: str, name: str, manifest: Mapping[str, str], signature: str | None) -> None:
    """Check ``signature`` when a key is configured (nothing to check without one).

    Args:
        label: How to name the version in errors, e.g. ``"flights_delay v2"``.
        name: Registered model name (signed with the manifest).
        manifest: The manifest as stored.
        signature: The stored signature tag (None when absent).

    Raises:
        ArtifactRejected: ``registry.signature_missing`` (and unsigned versions are not allowed)
            or ``registry.signature_invalid``.
    """
    key = manifest_key()
    if key is None:
        return
    if not signature:
        if os.environ.get(ALLOW_UNSIGNED_ENV, "") == "1":
            logger.warning("%s: manifest is not signed; loading it because %s=1", label, ALLOW_UNSIGNED_ENV)
            return
        raise ArtifactRejected(
            f"{label}: the artifact manifest is not signed and {KEY_ENV} is set",
            code="registry.signature_missing",
            hint=f"retrain it to register a signed version, or set {ALLOW_UNSIGNED_ENV}=1 to accept versions registered before the key",
            details={"file": SIGNATURE_TAG},
        )
    if not hmac.compare_digest(signature, sign_manifest(name, manifest, key)):
        raise ArtifactRejected(
            f"{label}: the artifact manifest signature does not match (the manifest was edited, or signed with another key)",
            code="registry.signature_invalid",
            hint=f"do not load this version; check {KEY_ENV} and who changed the tracking database",
            details={"file": SIGNATURE_TAG},
        )


def _short(digest: str) -> str:
    return digest[:12] + "…"


def verify_artifacts(local_dir: Path, manifest: dict[str, str], *, label: str = "model artifacts") -> None:
    """Check that ``local_dir`` holds exactly the files of ``manifest`` with the same hashes.

    Args:
        local_dir: The downloaded artifact directory (a temporary one: never named in errors).
        manifest: ``{path: sha256}`` recorded at registration.
        label: How to name the version in errors, e.g. ``"flights_delay v2"``.

    Raises:
        ArtifactRejected: (code ``registry.artifact_mismatch``, a :class:`~steward.errors.DataError`)
            naming every missing, changed or unexpected file, with expected and found hashes.
    """
    if not manifest:
        raise ArtifactRejected(f"{label}: no artifact manifest", hint="re-register the model with 'steward train'")
    actual = build_manifest(Path(local_dir))
    missing = sorted(set(manifest) - set(actual))
    unexpected = sorted(set(actual) - set(manifest))
    changed = sorted(k for k in set(manifest) & set(actual) if manifest[k] != actual[k])
    if missing or unexpected or changed:
        parts = [f"{k} sha256 mismatch (expected {_short(manifest[k])}, found {_short(actual[k])})" for k in changed]
        parts += [f"{k} missing" for k in missing]
        parts += [f"{k} unexpected (not in the manifest)" for k in unexpected]
        raise ArtifactRejected(
            f"{label}: {'; '.join(parts)}",
            hint="the artifacts do not match their manifest: the artifact store was modified after registration; do not load this version",
            details={"changed": changed, "missing": missing, "unexpected": unexpected},
        )
