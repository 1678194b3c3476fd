"""Download a registered model, verify its SHA-256 manifest, then load it natively.

Nothing is deserialized before every file matches the manifest recorded at
registration, and nothing is ever unpickled (see :mod:`steward.modeling.estimators`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steward.errors import DataError, NotFound
from steward.modeling import load_native, resolve_estimator
from steward.registry.manifest import verify_artifacts
from steward.registry.versions import get_alias_version, get_model_version

if TYPE_CHECKING:
    from steward.backends.base import ModelMetadata
    from steward.workspace import Workspace

__all__ = ["MANIFEST_TAG", "load_verified_model", "resolve_version"]

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
    version = get_alias_version(ws, name, text)
    if version is None:
        raise NotFound(f"model {name} has no alias {text!r}", hint="see 'steward registry list'")
    return version


def load_verified_model(ws: Workspace, name: str, alias: str | int = "champion") -> tuple[Any, ModelMetadata]:
    """Download ``name@alias`` (or a version number), verify it, and load it natively.

    Returns:
        ``(model, model_info)``: a ``lightgbm.Booster`` or scikit-learn estimator,
        and its :class:`~steward.backends.base.ModelMetadata` (``model_info.metadata["steward"]``
        holds the feature encoding; see :func:`steward.modeling.score_frame`).

    Raises:
        NotFound: no such model, alias or version.
        DataError: the artifacts do not match their manifest (``registry.artifact_mismatch``)
            or the format is not one Steward loads safely.
    """
    version = resolve_version(ws, name, alias)
    mv = get_model_version(ws, name, version)
    raw = mv.tags.get(MANIFEST_TAG)
    if not raw:
        raise DataError(
            f"{name} v{version} has no artifact manifest", code="registry.artifact_mismatch", hint="only models registered by Steward load"
        )
    manifest = json.loads(raw)
    registry = ws.model_registry
    with tempfile.TemporaryDirectory(prefix="steward-model-") as tmp:
        local = registry.download_model(mv.source, Path(tmp))
        verify_artifacts(local, manifest)
        trusted_root = None
        try:
            trusted_root = resolve_estimator(ws.spec.model.estimator).module_root
        except Exception:  # the current spec may name an estimator this version did not use
            logger.debug("spec estimator not resolvable; trusting only built-in prefixes")
        model = load_native(local, extra_trusted_root=trusted_root)
        info = registry.model_metadata(local)
    logger.info("loaded %s v%s (%s files verified)", name, version, len(manifest))
    return model, info
