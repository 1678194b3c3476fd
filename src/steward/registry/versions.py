"""Registered model versions and their aliases (MLflow stages are deprecated: aliases only).

Aliases: ``challenger`` (the newest trained version), ``champion`` (whoever
serves) and ``previous`` (the champion before, for rollback). Every alias
change is recorded in the metadata store (``alias_changes``) with who, when
and why, besides being applied in the MLflow registry.

Verify, then commit: :func:`promote`, :func:`rollback`, :func:`assign_alias` and
:func:`register_version` download, verify and load their target first
(:func:`steward.registry.loader.verify_version`) and change nothing when it fails, so a
version that cannot be served never gets an alias. :func:`set_alias` is the unchecked
primitive they build on.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from steward._primitives import resolve_actor, utcnow
from steward.errors import Conflict, GateFailed, NotFound, ValidationFailed
from steward.registry.loader import MANIFEST_TAG, verify_source, verify_version
from steward.registry.manifest import SIGNATURE_TAG, manifest_key, sign_manifest

if TYPE_CHECKING:
    from steward.backends.base import ModelVersionInfo
    from steward.workspace import Workspace

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS",
    "AliasChange",
    "ModelVersionSummary",
    "alias_history",
    "assign_alias",
    "current_actor",
    "get_alias_version",
    "get_model_version",
    "latest_gate_verdict",
    "list_models",
    "promote",
    "register_version",
    "rollback",
    "set_alias",
]

logger = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS = "previous"


@dataclass
class AliasChange:
    """One alias move: ``alias`` went from ``from_version`` to ``to_version`` (None = unset)."""

    change_id: str
    model_name: str
    alias: str
    from_version: int | None
    to_version: int | None
    action: str
    actor: str
    reason: str
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class ModelVersionSummary:
    """One registered version, for listings."""

    name: str
    version: int
    aliases: list[str]
    run_id: str | None
    created_at: str
    metric: str | None = None
    metric_value: float | None = None
    gate: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


current_actor = resolve_actor
"""Who is acting, as canonical actor text (the registry's name for :func:`steward._primitives.resolve_actor`)."""


def get_model_version(ws: Workspace, name: str, version: int) -> ModelVersionInfo:
    """One registered version (its run, source, tags and aliases).

    Raises:
        NotFound: no such model or version.
        ValidationFailed: the name is not a valid model name.
        BackendUnavailable: the registry cannot be reached.
    """
    try:
        return ws.model_registry.get_version(name, version)
    except NotFound:
        raise NotFound(f"model {name} has no version {version}", hint="see 'steward registry list'") from None


def get_alias_version(ws: Workspace, name: str, alias: str) -> int | None:
    """The version an alias points at, or None when unset (or the model does not exist).

    Raises:
        ValidationFailed: the name is not a valid model name.
        BackendUnavailable: the registry cannot be reached.
    """
    return ws.model_registry.get_alias(name, alias)


def _record(ws: Workspace, change: AliasChange) -> None:
    ws.metadata.execute(
        "INSERT INTO alias_changes (change_id, model_name, alias, from_version, to_version, action, actor, reason, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            change.change_id,
            change.model_name,
            change.alias,
            change.from_version,
            change.to_version,
            change.action,
            change.actor,
            change.reason,
            change.created_at,
        ),
    )


def set_alias(ws: Workspace, name: str, alias: str, version: int | None, *, actor: str, reason: str, action: str) -> AliasChange:
    """Point ``alias`` at ``version`` (or remove it when None) and record the change.

    The unchecked primitive: operations verify their target first (see :func:`assign_alias`).
    """
    registry = ws.model_registry
    before = get_alias_version(ws, name, alias)
    if version is None:
        if before is not None:
            registry.delete_alias(name, alias)
    else:
        registry.set_alias(name, alias, version)
    actor = resolve_actor(actor)
    change = AliasChange(uuid.uuid4().hex, name, alias, before, version, action, actor, reason, utcnow())
    _record(ws, change)
    ws.audit.append(
        "registry.alias",
        f"model:{name}@{alias}",
        actor=actor,
        model=name,
        details={"from_version": before, "to_version": version, "action": action, "reason": reason},
    )
    logger.info("%s: alias %s %s -> %s (%s by %s: %s)", name, alias, before, version, action, actor, reason)
    return change


def assign_alias(
    ws: Workspace, name: str, alias: str, version: int, *, actor: str | None = None, reason: str, action: str = "set"
) -> AliasChange:
    """Verify ``version`` (download, hashes, signature, native load), then point ``alias`` at it.

    Raises:
        NotFound: no such version.
        DataError: the version cannot be served (nothing was changed).
    """
    verify_version(ws, name, version)
    return set_alias(ws, name, alias, version, actor=resolve_actor(actor), reason=reason, action=action)


def register_version(ws: Workspace, *, name: str, model_uri: str, run_id: str, tags: dict[str, str], actor: str | None = None) -> int:
    """Register a logged model as a new version of ``name`` and make it the ``challenger``.

    With a manifest in ``tags`` (every model Steward trains has one) the logged model is verified
    and loaded first, and nothing is registered when that fails; with ``$STEWARD_MANIFEST_KEY`` set
    the manifest is signed (tag ``steward.manifest_sig``).

    Raises:
        DataError: the logged model does not match its manifest or does not load.
    """
    tags = dict(tags)
    key = manifest_key()
    if MANIFEST_TAG in tags:
        if key is not None:
            tags[SIGNATURE_TAG] = sign_manifest(name, json.loads(tags[MANIFEST_TAG]), key)
        verify_source(ws, name, model_uri, tags)
    version = ws.model_registry.register_version(name, model_uri, tags=tags).version
    set_alias(ws, name, CHALLENGER, version, actor=resolve_actor(actor), reason=f"trained by run {run_id}", action="register")
    return version


def alias_history(ws: Workspace, name: str | None = None) -> list[AliasChange]:
    """Every recorded alias change (of one model, or all), oldest first."""
    sql = "SELECT * FROM alias_changes"
    params: tuple[Any, ...] = ()
    if name:
        sql += " WHERE model_name = ?"
        params = (name,)
    rows = ws.metadata.fetchall(sql + " ORDER BY created_at, change_id", params)
    return [
        AliasChange(
            change_id=r["change_id"],
            model_name=r["model_name"],
            alias=r["alias"],
            from_version=None if r["from_version"] is None else int(r["from_version"]),
            to_version=None if r["to_version"] is None else int(r["to_version"]),
            action=r["action"],
            actor=r["actor"],
            reason=r["reason"],
            created_at=r["created_at"],
        )
        for r in rows
    ]


def latest_gate_verdict(ws: Workspace, name: str, version: int) -> dict[str, Any] | None:
    """The newest recorded gate verdict for a version (``checks`` decoded), or None."""
    row = ws.metadata.fetchone(
        "SELECT * FROM gate_verdicts WHERE model_name = ? AND challenger_version = ? ORDER BY created_at DESC, verdict_id DESC",
        (name, version),
    )
    if row is None:
        return None
    out = dict(row)
    out["passed"] = bool(int(out["passed"]))
    out["checks"] = json.loads(out["checks"])
    out["champion_version"] = None if out["champion_version"] is None else int(out["champion_version"])
    return out


def promote(ws: Workspace, name: str, version: int, *, reason: str, actor: str | None = None, force: bool = False) -> list[AliasChange]:
    """Make ``version`` the champion; the old champion becomes ``previous``.

    The gate is blocking: the version needs a passing verdict taken against the
    current champion, unless ``force`` (recorded in the reason).

    Raises:
        NotFound: no such version.
        Conflict: the version already is the champion.
        GateFailed: no passing, current gate verdict.
        DataError: the version cannot be served (hashes, signature, load); nothing was changed.
    """
    if not reason.strip():
        raise ValidationFailed("a promotion needs a reason", hint="pass --reason TEXT", details={"errors": ["reason"]})
    get_model_version(ws, name, version)
    who = resolve_actor(actor)
    champion = get_alias_version(ws, name, CHAMPION)
    if champion == version:
        raise Conflict(f"{name} v{version} already is the champion", code="registry.already_champion")
    if not force:
        verdict = latest_gate_verdict(ws, name, version)
        if verdict is None or not verdict["passed"]:
            raise GateFailed(
                f"{name} v{version} has {'no' if verdict is None else 'no passing'} gate verdict",
                hint=f"run 'steward gate {name} --version {version}' (or promote with --force and a reason)",
                details={"verdict": verdict},
            )
        if verdict["champion_version"] != champion:
            raise GateFailed(
                f"{name} v{version} was gated against v{verdict['champion_version']}, but the champion is now v{champion}",
                hint=f"run 'steward gate {name} --version {version}' again",
            )
    why = reason if not force else f"{reason} (forced past the gate)"
    verify_version(ws, name, version)  # even when forced: a version that cannot be served never becomes champion
    changes: list[AliasChange] = []
    if champion is not None:
        changes.append(set_alias(ws, name, PREVIOUS, champion, actor=who, reason=why, action="promote"))
    changes.append(set_alias(ws, name, CHAMPION, version, actor=who, reason=why, action="promote"))
    if get_alias_version(ws, name, CHALLENGER) == version:
        changes.append(set_alias(ws, name, CHALLENGER, None, actor=who, reason=why, action="promote"))
    return changes


def rollback(ws: Workspace, name: str, *, reason: str, actor: str | None = None) -> list[AliasChange]:
    """Champion ← previous; the rolled-back version keeps no alias and ``previous`` is cleared.

    Raises:
        Conflict: there is no ``previous`` version to roll back to.
        DataError: the previous version cannot be served; nothing was changed.
    """
    if not reason.strip():
        raise ValidationFailed("a rollback needs a reason", hint="pass --reason TEXT", details={"errors": ["reason"]})
    who = resolve_actor(actor)
    previous = get_alias_version(ws, name, PREVIOUS)
    if previous is None:
        raise Conflict(f"{name} has no previous champion to roll back to", code="registry.no_previous", hint="promote a version instead")
    verify_version(ws, name, previous)
    changes = [set_alias(ws, name, CHAMPION, previous, actor=who, reason=reason, action="rollback")]
    changes.append(set_alias(ws, name, PREVIOUS, None, actor=who, reason=reason, action="rollback"))
    return changes


def list_models(ws: Workspace, name: str | None = None) -> list[ModelVersionSummary]:
    """Every registered version (of one model, or all), newest first, with aliases and main metric.

    Raises:
        NotFound: ``name`` is given and no such model is registered.
        BackendUnavailable: the registry cannot be reached.
    """
    registry = ws.model_registry
    names = [name] if name else registry.list_models()
    out: list[ModelVersionSummary] = []
    for n in names:
        for mv in registry.list_versions(n):
            tags = dict(mv.tags)
            metric = tags.get("steward.metric")
            value = tags.get("steward.metric_value")
            verdict = latest_gate_verdict(ws, n, mv.version)
            out.append(
                ModelVersionSummary(
                    name=n,
                    version=mv.version,
                    aliases=list(mv.aliases),
                    run_id=mv.run_id,
                    created_at=mv.created_at,
                    metric=metric,
                    metric_value=float(value) if value not in (None, "", "None") else None,
                    gate=None if verdict is None else ("passed" if verdict["passed"] else "failed"),
                    tags={k: v for k, v in tags.items() if k not in (MANIFEST_TAG, SIGNATURE_TAG)},
                )
            )
    return out
