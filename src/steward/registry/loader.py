"""Download a registered model, verify its manifest (hashes and signature), then load it natively.

Nothing is deserialized before every file matches the manifest recorded at
registration (and, with ``STEWARD_MANIFEST_KEY`` set, the manifest matches its
signature), and nothing is ever unpickled (see :mod:`steward.modeling.estimators`).

:func:`verify_version` is the same check without keeping the model: every operation
that changes registry or rollout state runs it on its target first, so a version that
cannot be served never becomes champion, previous or a rollout's challenger.
(This module reads the registry backend directly: :mod:`steward.registry.versions`
imports it to verify before it moves an alias.)
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steward.errors import ArtifactRejected, NotFound, StewardError
from steward.modeling import load_native, resolve_estimator
from steward.registry.manifest import SIGNATURE_TAG, verify_artifacts, verify_signature

if TYPE_CHECKING:
    from steward.backends.base import ModelMetadata
    from steward.workspace import Workspace

__all__ = ["MANIFEST_TAG", "load_verified_model", "resolve_version", "verify_source", "verify_version"]

logger = logging.getLogger(__name__)

MANIFEST_TAG = "steward.manifest"


def resolve_version(ws: Workspace, name: str, ref: str | int) -> int:
    """A version number from ``3``, ``"3"``, ``"v3"`` or an alias such as ``"champion"``.

    Raises:
        NotFound: the alias is not set.
    """
    text = str(ref)
    if text.isdigit():
        return int(text)
    if text[:1] == "v" and text[1:].isdigit():
        return int(text[1:])
    version = ws.model_registry.get_alias(name, text)
    if version is None:
        raise NotFound(f"model {name} has no alias {text!r}", hint="see 'steward registry list'")
    return version


def _manifest(label: str, tags: Mapping[str, str]) -> dict[str, str]:
    raw = tags.get(MANIFEST_TAG)
    if not raw:
        raise ArtifactRejected(f"{label}: no artifact manifest", hint="only models registered by Steward load")
    try:
        manifest = json.loads(raw)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in manifest.items()):
        raise ArtifactRejected(f"{label}: the artifact manifest ({MANIFEST_TAG}) is not valid", hint="do not load this version")
    return manifest


def _load_checked(ws: Workspace, name: str, label: str, source: str, tags: Mapping[str, str]) -> tuple[Any, ModelMetadata]:
    """Check the signature, download ``source``, check every hash, then load it natively."""
    manifest = _manifest(label, tags)
    verify_signature(label, name, manifest, tags.get(SIGNATURE_TAG))
    registry = ws.model_registry
    with tempfile.TemporaryDirectory(prefix="steward-model-") as tmp:
        local = registry.download_model(source, Path(tmp))
        verify_artifacts(local, manifest, label=label)
        trusted_root = None
        try:
            trusted_root = resolve_estimator(ws.spec.model.estimator).module_root
        except Exception:  # the current spec may name an estimator this version did not use
            logger.debug("spec estimator not resolvable; trusting only built-in prefixes")
        try:
            model = load_native(local, extra_trusted_root=trusted_root)
            info = registry.model_metadata(local)
        except StewardError as exc:
            exc.message = f"{label}: {exc.message.replace(str(local), 'its artifacts')}"
            raise
        except Exception as exc:  # the files match their manifest, yet the library cannot read them
            raise ArtifactRejected(
                f"{label}: the model files do not load ({type(exc).__name__}: {exc})".replace(str(local), "<artifacts>"),
                code="registry.artifact_unloadable",
                hint="retrain and register it again",
                details={"files": sorted(manifest)},
            ) from None
    return model, info


def _version_tags(ws: Workspace, name: str, version: int) -> tuple[str, Mapping[str, str]]:
    try:
        mv = ws.model_registry.get_version(name, version)
    except NotFound:
        raise NotFound(f"model {name} has no version {version}", hint="see 'steward registry list'") from None
    return mv.source, mv.tags


def load_verified_model(ws: Workspace, name: str, alias: str | int = "champion") -> tuple[Any, ModelMetadata]:
    """Download ``name@alias`` (or a version number), verify it, and load it natively.

    Returns:
        ``(model, model_info)``: a ``lightgbm.Booster`` or scikit-learn estimator,
        and its :class:`~steward.backends.base.ModelMetadata` (``model_info.metadata["steward"]``
        holds the feature encoding; see :func:`steward.modeling.score_frame`).

    Raises:
        NotFound: no such model, alias or version.
        ArtifactRejected: (a :class:`~steward.errors.DataError`, HTTP 422) the artifacts do not match
            their manifest (``registry.artifact_mismatch``), the manifest's signature is missing or wrong
            (``registry.signature_missing``/``registry.signature_invalid``), or they do not load; the
            message names the model, version and file, e.g. ``flights_delay v2: model.lgb sha256
            mismatch (expected ab12…, found 9f3c…)``.
        DataError: the format is not one Steward loads safely (``registry.unsafe_format``).
    """
    version = resolve_version(ws, name, alias)
    source, tags = _version_tags(ws, name, version)
    model, info = _load_checked(ws, name, f"{name} v{version}", source, tags)
    logger.info("loaded %s v%s (verified)", name, version)
    return model, info


def verify_version(ws: Workspace, name: str, version: int) -> None:
    """Download, verify and load ``name`` v``version`` without keeping it: can it be served?

    Raises:
        NotFound: no such version.
        DataError: it cannot be served (see :func:`load_verified_model`); nothing was changed.
    """
    load_verified_model(ws, name, version)


def verify_source(ws: Workspace, name: str, model_uri: str, tags: Mapping[str, str]) -> None:
    """Verify a logged model before it is registered as a new version of ``name`` (same checks as loading).

    Raises:
        DataError: it cannot be served; it must not be registered.
    """
    _load_checked(ws, name, f"{name} (new version from {model_uri})", model_uri, tags)
