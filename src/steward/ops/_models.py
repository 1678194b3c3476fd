"""Registry operations: promote, roll back, move an alias; what a served model looks like.

Every alias move is recorded (``alias_changes`` and the audit trail) by :mod:`steward.registry`.
Which moves are gated is decided here, once: ``champion`` goes through the registry's gated
promotion (a passing, current gate verdict, unless forced and recorded); any other alias is
set directly. With a running server, the server reloads the model before the call returns.

Verify, then commit: every move downloads, verifies (hashes, manifest signature) and loads its
target first; a version that fails changes nothing (aliases, ``alias_changes``, audit trail) and
the call raises :class:`~steward.errors.ArtifactRejected` (HTTP 422, a ``DataError``) naming the
model, version and file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from steward.errors import NotFound, StewardError
from steward.registry import versions
from steward.registry.versions import CHALLENGER, CHAMPION, PREVIOUS, AliasChange

if TYPE_CHECKING:
    from steward.ops._server import LiveServer
    from steward.workspace import Workspace

__all__ = ["AliasMove", "ModelDescription", "describe_model", "model_aliases", "move_alias", "promote", "rollback"]

logger = logging.getLogger(__name__)

GATED_ALIASES = frozenset({CHAMPION})
"""Aliases that move only through the gated promotion (the others are set directly)."""


@dataclass
class AliasMove:
    """What an alias operation changed.

    Attributes:
        model: Registered model name.
        changes: Every alias change recorded, in order (e.g. ``previous`` then ``champion``).
        reload: The running server's reload report, when a server applied the move at once.
    """

    model: str
    changes: list[AliasChange]
    reload: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"model": self.model, "changes": [c.to_dict() for c in self.changes], "reload": self.reload}


@dataclass
class ModelDescription:
    """A served model as the server holds it, with its registry versions when the registry answers.

    Attributes:
        served: The server's view (:meth:`~steward.serving.server.ModelServer.describe`).
        versions: Registered versions (version, aliases, created_at, metric, metric_value, gate).
        aliases: Alias → version.
        registry: ``{"state": "ok"}``, or ``{"state": "unavailable" | "not_found", "code": STABLE_CODE}``.
    """

    served: dict[str, Any]
    versions: list[dict[str, Any]] = field(default_factory=list)
    aliases: dict[str, int] = field(default_factory=dict)
    registry: dict[str, str] = field(default_factory=lambda: {"state": "ok"})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the server's fields, then ``versions``, ``aliases`` and ``registry``."""
        return {**self.served, "versions": self.versions, "aliases": self.aliases, "registry": self.registry}


def _serving(server: LiveServer | None, model: str) -> LiveServer | None:
    """The server to reload ``model`` in after a move (asked before the move, so a refused call changes nothing)."""
    return server if server is not None and server.serves(model) else None


def _reload(server: LiveServer | None, model: str) -> dict[str, Any] | None:
    return server.reload(model) if server is not None else None


def promote(
    ws: Workspace,
    model: str,
    version: int,
    *,
    reason: str,
    actor: str | None = None,
    force: bool = False,
    server: LiveServer | None = None,
) -> AliasMove:
    """Make ``version`` the champion (the old champion becomes ``previous``), behind the gate.

    Args:
        ws: The workspace.
        model: Registered model name.
        version: The version to promote.
        reason: Why (recorded with who and when).
        actor: Who (default ``$STEWARD_ACTOR`` or the OS user).
        force: Promote without a passing gate verdict (recorded in the reason).
        server: A running server to reload the model in at once.

    Raises:
        NotFound: no such version.
        Conflict: it already is the champion.
        GateFailed: no passing, current gate verdict (and not ``force``).
        ValidationFailed: an empty reason.
        DataError: the version cannot be served (nothing was changed).
    """
    live = _serving(server, model)
    changes = versions.promote(ws, model, version, reason=reason, actor=actor, force=force)
    return AliasMove(model, changes, _reload(live, model))


def rollback(ws: Workspace, model: str, *, reason: str, actor: str | None = None, server: LiveServer | None = None) -> AliasMove:
    """Champion ← previous (the rolled-back version keeps no alias).

    Raises:
        Conflict: there is no previous champion.
        ValidationFailed: an empty reason.
    """
    live = _serving(server, model)
    changes = versions.rollback(ws, model, reason=reason, actor=actor)
    return AliasMove(model, changes, _reload(live, model))


def move_alias(
    ws: Workspace,
    model: str,
    alias: str,
    version: int,
    *,
    reason: str,
    actor: str | None = None,
    force: bool = False,
    server: LiveServer | None = None,
) -> AliasMove:
    """Point ``alias`` at ``version``: ``champion`` through the gated :func:`promote`, any other alias directly.

    ``force`` applies to the gated aliases only.

    Raises:
        NotFound: no such version.
        GateFailed: a gated alias without a passing, current gate verdict (and not ``force``).
        DataError: the version cannot be served (nothing was changed).
    """
    if alias in GATED_ALIASES:
        return promote(ws, model, version, reason=reason, actor=actor, force=force, server=server)
    live = _serving(server, model)
    change = versions.assign_alias(ws, model, alias, version, actor=actor, reason=reason, action="set")
    return AliasMove(model, [change], _reload(live, model))


def model_aliases(ws: Workspace, model: str) -> dict[str, int | None]:
    """The versions ``champion``, ``previous`` and ``challenger`` point at (None when unset)."""
    return {a: versions.get_alias_version(ws, model, a) for a in (CHAMPION, PREVIOUS, CHALLENGER)}


def describe_model(ws: Workspace | None, model: str, *, server: LiveServer) -> ModelDescription:
    """A served model: what the server holds, and its registry versions and aliases.

    The registry part degrades instead of failing: when the registry cannot answer, ``registry``
    names the state and a stable code (the error itself goes to the log, never to the caller) and
    the server's part is still returned.

    Raises:
        NotFound: the model is not served by ``server``.
    """
    out = ModelDescription(server.describe(model))
    if ws is None:
        out.registry = {"state": "unavailable", "code": "serving.no_workspace"}
        return out
    try:
        found = versions.list_models(ws, model)
    except NotFound as exc:
        out.registry = {"state": "not_found", "code": exc.code}
        return out
    except StewardError as exc:
        logger.warning("registry versions of %s unavailable: %s", model, exc)
        out.registry = {"state": "unavailable", "code": exc.code}
        return out
    except Exception:
        logger.exception("registry versions of %s could not be read", model)
        out.registry = {"state": "unavailable", "code": "backend.unavailable"}
        return out
    out.versions = [
        {
            "version": v.version,
            "aliases": v.aliases,
            "created_at": v.created_at,
            "metric": v.metric,
            "metric_value": v.metric_value,
            "gate": v.gate,
        }
        for v in found
    ]
    out.aliases = {a: v.version for v in found for a in v.aliases}
    return out
