"""The serving stage's link to the model registry: resolve aliases, load verified models, move aliases.

Everything goes through :mod:`steward.registry`: ``load_verified_model`` checks the
artifacts' SHA-256 manifest before anything is deserialized (a mismatch refuses the
load), and ``promote`` moves ``champion`` (keeping ``previous``) behind the gate.
The registry backend reports an unreachable store as :class:`~steward.errors.BackendUnavailable`
(never as "not found"), which the server survives; anything else unexpected while loading is
reported the same way, so one bad poll never takes serving down.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from steward.errors import BackendUnavailable, StewardError
from steward.registry import get_alias_version, load_verified_model, promote
from steward.registry import resolve_version as registry_resolve_version
from steward.serving.runtime import InputSchema, NativeRuntime

if TYPE_CHECKING:
    from steward.backends.base import ModelMetadata
    from steward.workspace import Workspace

__all__ = ["load_runtime", "model_aliases", "promote_version", "resolve_version", "schema_of"]

logger = logging.getLogger(__name__)


def _unavailable(exc: Exception, what: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"model registry unreachable while {what}: {exc}", hint="check storage.tracking_uri and that its database is up"
    )


def resolve_version(ws: Workspace, name: str, alias: str) -> str | None:
    """The version ``alias`` points at, or None when the alias (or model) is not set.

    Raises:
        BackendUnavailable: the tracking database cannot be reached.
    """
    try:
        version = get_alias_version(ws, name, alias)
    except StewardError:
        raise
    except Exception as exc:
        raise _unavailable(exc, f"resolving {name}@{alias}") from exc
    return None if version is None else str(version)


def model_aliases(ws: Workspace, name: str) -> dict[str, str]:
    """Alias → version for one registered model (empty when the model does not exist).

    Raises:
        BackendUnavailable: the tracking database cannot be reached.
    """
    return {alias: str(version) for alias, version in ws.model_registry.aliases(name).items()}


def promote_version(
    ws: Workspace, name: str, version: str, *, actor: str | None = None, reason: str = "rollout completed", force: bool = False
) -> None:
    """Make ``version`` the champion through the registry (old champion → ``previous``; the gate applies unless ``force``)."""
    promote(ws, name, int(version), reason=reason, actor=actor, force=force)


def schema_of(model: Any, info: ModelMetadata) -> InputSchema:
    """The input schema: Steward's stored feature encoding, else the model's signature, else no fields."""
    meta = info.metadata.get("steward") or {}
    encoding = meta.get("encoding")
    if encoding:
        return InputSchema.from_encoding(encoding)
    return InputSchema.from_signature(info.inputs) if info.inputs is not None else InputSchema(())


def load_runtime(ws: Workspace, name: str, ref: str, *, entity_keys: list[str] | None = None) -> NativeRuntime:
    """Load ``name@ref`` (an alias or a version number) natively, after its artifact hashes are verified.

    Raises:
        NotFound: no such model, alias or version.
        DataError: the artifacts do not match their manifest (``registry.artifact_mismatch``).
        BackendUnavailable: the registry cannot be reached.
    """
    try:
        version = registry_resolve_version(ws, name, ref)
        model, info = load_verified_model(ws, name, version)
    except StewardError:
        raise
    except Exception as exc:
        raise _unavailable(exc, f"loading {name}@{ref}") from exc
    rt = NativeRuntime(model, name, str(version), schema_of(model, info), info)
    if entity_keys:
        rt.schema = rt.schema.with_extra(entity_keys)
        rt.feature_names = rt.schema.names
    logger.info("loaded %s v%s (%s, %d features)", name, version, rt.flavor, len(rt.feature_names))
    return rt
