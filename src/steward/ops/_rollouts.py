"""Rollout operations: start, promote, abort, weight, evaluate, status; and reloading a running server.

A rollout lives in the metadata store (:class:`~steward.serving.rollout.RolloutController`), so the
CLI, the API, MCP and every server replica see the same one. Each operation here writes it there;
given a running server (:class:`~steward.ops.LiveServer`), the server applies it before the call
returns, otherwise every server picks it up at its next poll (``POST /v1/admin/reload`` at once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from steward._primitives import resolve_actor
from steward.errors import Conflict, NotFound, StewardError, ValidationFailed
from steward.registry.loader import verify_version
from steward.serving import registry_link
from steward.serving.rollout import RolloutController, RolloutState
from steward.spec import RolloutSpec, ServedModelSpec

if TYPE_CHECKING:
    from steward.ops._server import LiveServer
    from steward.workspace import Workspace

__all__ = [
    "RolloutEvaluation",
    "RolloutStatus",
    "abort_rollout",
    "evaluate_rollout",
    "promote_rollout",
    "reload_models",
    "rollout_policy",
    "rollout_status",
    "set_rollout_weight",
    "start_rollout",
]

logger = logging.getLogger(__name__)


@dataclass
class RolloutStatus:
    """The latest rollout of a model and, from a running server, how traffic is split now.

    Attributes:
        model: Registered model name.
        rollout: The latest rollout (running or finished) with every step; None when never rolled out.
        routing: ``{"mode", "weight"}`` applied by the server now (None without a server, or when it does not serve the model).
        stats: The server's window statistics per variant (empty without a server).
    """

    model: str
    rollout: RolloutState | None
    routing: dict[str, Any] | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "model": self.model,
            "rollout": self.rollout.to_dict() if self.rollout else None,
            "routing": self.routing,
            "stats": self.stats,
        }


@dataclass
class RolloutEvaluation:
    """The rollout after one evaluation against its SLOs, with the statistics it was judged on."""

    rollout: RolloutState | None
    stats: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"rollout": self.rollout.to_dict() if self.rollout else None, "stats": self.stats}


def rollout_policy(served: ServedModelSpec | None, overrides: Mapping[str, Any] | None = None) -> RolloutSpec:
    """The policy of a rollout: the model's ``serving.models.NAME.rollout`` (or the defaults), overridden field by field.

    Args:
        served: The model's serving configuration (None: not configured; the defaults apply).
        overrides: Policy fields to replace; None values are ignored.

    Raises:
        ValidationFailed: the result is no valid policy (every bad field named).
    """
    base = (served.rollout if served is not None and served.rollout is not None else RolloutSpec()).model_dump()
    base.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return RolloutSpec.model_validate(base)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise ValidationFailed(
            "invalid rollout policy: " + ", ".join(e["field"] for e in errors),
            hint=errors[0]["message"] if errors else None,
            details={"errors": errors},
        ) from None


def _controller(ws: Workspace | None, server: LiveServer | None) -> RolloutController:
    ctl = server.controller if server is not None else (RolloutController(ws) if ws is not None else None)
    if ctl is None:
        raise Conflict("rollouts need a workspace (metadata store)", code="rollout.no_workspace")
    return ctl


def _resolver(ws: Workspace | None, server: LiveServer | None) -> Callable[[str, str], str | None]:
    if server is not None:
        return server.resolve
    assert ws is not None  # _controller refused a call without either
    return lambda name, alias: registry_link.resolve_version(ws, name, alias)


def start_rollout(
    ws: Workspace | None,
    model: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    actor: str | None = None,
    server: LiveServer | None = None,
) -> RolloutState:
    """Start rolling out ``model``'s challenger against its champion.

    The policy is the model's ``serving.models.NAME.rollout`` overridden by ``overrides``; the
    challenger is the version its ``challenger_alias`` points at, the champion the version the
    model's serving alias points at (the one a running server has loaded, when given one).

    Args:
        ws: The workspace (may be None only with a ``server``, which has its own).
        model: Registered model name (with a server: one it serves).
        overrides: Policy fields to replace (``mode``, ``steps``, ``weight``, ``sticky_key``, ...).
        actor: Who (default ``$STEWARD_ACTOR`` or the OS user).
        server: A running server that applies the rollout at once.

    Raises:
        NotFound: no challenger version (``rollout.no_challenger``); with a server, the model is not served.
        Conflict: the challenger is the champion (``rollout.same_version``), or a rollout is already running.
        ValidationFailed: the policy is invalid (every bad field named).
        DataError: the challenger cannot be served (hashes, signature, load): no rollout is started
            (``ArtifactRejected``, HTTP 422).
    """
    served = server.served_spec(model) if server is not None else (ws.spec.serving.models.get(model) if ws is not None else None)
    ctl = _controller(ws, server)
    policy = rollout_policy(served, overrides)
    resolve = _resolver(ws, server)
    challenger = resolve(model, policy.challenger_alias)
    if challenger is None:
        raise NotFound(
            f"{model} has no {policy.challenger_alias!r} version to roll out",
            code="rollout.no_challenger",
            hint="train and register one first",
        )
    champion = server.champion_version(model) if server is not None else None
    if champion is None:
        champion = resolve(model, served.alias if served is not None else "champion")
    if champion == challenger:
        raise Conflict(f"{model} v{challenger} already is the champion", code="rollout.same_version")
    # verify, then commit: a challenger that cannot be served never gets a rollout row (with a server,
    # through its own loader: what it would load is what is checked)
    if server is not None:
        server.verify(model, challenger)
    elif ws is not None:
        verify_version(ws, model, int(challenger))
    st = ctl.start(model, policy, champion_version=champion, challenger_version=challenger, actor=resolve_actor(actor))
    if server is not None:
        server.apply_rollout(model, st, event="start")
    return st


def _applied(server: LiveServer | None, model: str, st: RolloutState, event: str) -> RolloutState:
    """Have a running server apply a rollout step; after a promotion it loads the new champion."""
    if server is None:
        return st
    server.apply_rollout(model, st, event=event)
    if event == "promote" and not st.active:
        try:
            server.reload(model)
        except StewardError as exc:  # the promotion stands; the next poll loads the champion
            logger.warning("reload of %s after its promotion failed: %s", model, exc)
    return st


def _check_served(server: LiveServer | None, model: str) -> None:
    if server is not None:
        server.served_spec(model)


def promote_rollout(
    ws: Workspace | None,
    model: str,
    *,
    reason: str = "",
    force: bool = False,
    actor: str | None = None,
    server: LiveServer | None = None,
) -> RolloutState:
    """Make the running rollout's challenger the champion (through the registry's gate) and finish the rollout.

    Raises:
        NotFound: no rollout is running.
        GateFailed: no passing gate verdict (and not ``force``); the rollout keeps running.
    """
    _check_served(server, model)
    ctl = _controller(ws, server)
    st = ctl.promote(model, actor=resolve_actor(actor), reason=reason or "promoted by operator", force=force)
    return _applied(server, model, st, "promote")


def abort_rollout(
    ws: Workspace | None, model: str, *, reason: str = "", actor: str | None = None, server: LiveServer | None = None
) -> RolloutState:
    """Stop the running rollout: all traffic back to the champion at once.

    Raises:
        NotFound: no rollout is running.
    """
    _check_served(server, model)
    ctl = _controller(ws, server)
    st = ctl.abort(model, actor=resolve_actor(actor), reason=reason or "aborted by operator")
    return _applied(server, model, st, "abort")


def set_rollout_weight(
    ws: Workspace | None,
    model: str,
    weight: float,
    *,
    reason: str = "",
    actor: str | None = None,
    server: LiveServer | None = None,
) -> RolloutState:
    """Set the challenger's share of traffic by hand (blue/green: 100 = switch to green, 0 = switch back).

    Raises:
        NotFound: no rollout is running.
    """
    _check_served(server, model)
    ctl = _controller(ws, server)
    st = ctl.set_weight(model, weight, actor=resolve_actor(actor), reason=reason or f"set to {weight:g}%")
    return _applied(server, model, st, "weight")


def evaluate_rollout(server: LiveServer, model: str) -> RolloutEvaluation:
    """Judge ``model``'s running rollout against its SLOs now (not at the next tick) and apply the decision.

    The SLO windows live in the server's memory, so this needs the running server.

    Raises:
        NotFound: the model is not served there.
    """
    st = server.evaluate(model)
    return RolloutEvaluation(st, server.variant_stats(model))


def rollout_status(ws: Workspace | None, model: str, *, must_exist: bool = False, server: LiveServer | None = None) -> RolloutStatus:
    """The latest rollout of ``model`` with every step and, from a running server, its live split and statistics.

    Raises:
        NotFound: ``must_exist`` and the model has never been rolled out (``rollout.none``).
    """
    ctl = server.controller if server is not None else (RolloutController(ws) if ws is not None else None)
    latest = ctl.latest(model) if ctl is not None else None
    if latest is None and must_exist:
        raise NotFound(f"{model} has never been rolled out", code="rollout.none", hint=f"steward rollout start {model}")
    if server is None:
        return RolloutStatus(model, latest)
    return RolloutStatus(model, latest, server.routing(model), server.variant_stats(model))


def reload_models(server: LiveServer, model: str | None = None) -> dict[str, Any]:
    """Re-read aliases and rollouts now and swap in what changed, without dropping requests.

    Returns:
        One model's reload report (``champion``, ``challenger``, ``changes``), or for every model
        (``model`` None) a report per model (``{"error": ...}`` for one that failed; the others still reload).

    Raises:
        NotFound: ``model`` is not served.
        BackendUnavailable: the registry cannot be reached (one model; the loaded versions keep serving).
    """
    return server.reload(model) if model is not None else server.refresh()
