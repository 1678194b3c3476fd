"""Admin endpoints: reload models, move aliases, start/watch/promote/abort rollouts.

Reading rollout state needs ``viewer``; every change needs ``admin`` and is recorded
(rollout steps and alias changes go to the metadata store and the audit trail). Each
endpoint parses its request, calls one :mod:`steward.ops` function in a worker thread (a pool of its own) with
this server's :class:`~steward.serving.live.LiveHandle` (so the change is applied here before
the answer) and returns its result.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, field_validator

from steward import ops
from steward._primitives import PROBLEM_MEDIA_TYPE, make_actor
from steward.api._offload import call_op
from steward.api.auth import Principal, require
from steward.api.routes_models import parse_body, read_json
from steward.errors import Conflict, ValidationFailed
from steward.serving.live import LiveHandle
from steward.serving.server import ModelServer
from steward.workspace import Workspace

__all__ = ["check_model_name", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/admin", tags=["admin"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key", "content": {PROBLEM_MEDIA_TYPE: {}}},
    403: {"description": "Role too low (admin needed)", "content": {PROBLEM_MEDIA_TYPE: {}}},
    404: {"description": "No such model or rollout", "content": {PROBLEM_MEDIA_TYPE: {}}},
    409: {
        "description": "Conflicts with the current state (e.g. a rollout is running, the gate refused)",
        "content": {PROBLEM_MEDIA_TYPE: {}},
    },
    422: {"description": "Invalid body", "content": {PROBLEM_MEDIA_TYPE: {}}},
    503: {"description": "Registry or metadata store unreachable", "content": {PROBLEM_MEDIA_TYPE: {}}},
}


_VERSION_ALIAS = re.compile(r"^[vV][0-9]+$")


def check_model_name(name: str) -> str:
    """A registered-model name the registry can store, else 422 naming the field (before any backend is asked).

    Raises:
        ValidationFailed: ``name`` is empty, holds ``:`` or ``/``, or is not a plain path segment (``.``, ``..``).
    """
    if not name.strip() or ":" in name or "/" in name or name in (".", ".."):
        raise ValidationFailed(
            f"invalid model name {name!r}",
            hint="a model name cannot be empty, contain ':' or '/', or be '.' or '..'",
            details={"errors": [{"field": "name", "message": "not a valid model name", "type": "value_error"}]},
        )
    return name


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": model.model_json_schema()}}}}


class AliasRequest(BaseModel):
    """Point an alias at a version."""

    alias: str = Field(
        pattern=r"^[A-Za-z0-9_-]+$",
        max_length=255,
        description="champion, challenger, previous or any other alias (letters, digits, _ and -; not latest or vN)",
    )
    # the registry stores versions as 32-bit integers: a larger one is a bad request, not a store failure
    version: int = Field(ge=1, le=2**31 - 1)
    reason: str = Field(min_length=1)
    force: bool = Field(default=False, description="champion only: promote without a passing gate verdict (recorded)")

    @field_validator("alias")
    @classmethod
    def _not_reserved(cls, alias: str) -> str:
        # the registry reserves these (latest, and v1, v2, ... name versions): refused here, by field, not by the store
        if alias.lower() == "latest" or _VERSION_ALIAS.match(alias):
            raise ValueError(f"'{alias}' is reserved by the model registry")
        return alias


class RolloutStartRequest(BaseModel):
    """Start a rollout; fields left out come from ``serving.models.NAME.rollout`` in steward.yaml."""

    mode: Literal["canary", "ab", "shadow", "bluegreen"] | None = None
    challenger_alias: str | None = None
    sticky_key: str | None = None
    steps: list[float] | None = None
    weight: float | None = Field(default=None, ge=0, le=100)
    step_window_s: float | None = Field(default=None, gt=0)
    auto: bool | None = None


class RolloutActionRequest(BaseModel):
    """Promote or abort with a reason."""

    reason: str = ""
    force: bool = False


class WeightRequest(BaseModel):
    """Set the challenger share (blue/green: 100 switches to green, 0 switches back)."""

    weight: float = Field(ge=0, le=100)
    reason: str = ""


def _server(request: Request) -> ModelServer:
    server: ModelServer = request.app.state.model_server
    return server


def _live(request: Request) -> LiveHandle:
    return _server(request).live


def _workspace(request: Request) -> Workspace:
    ws: Workspace | None = request.app.state.workspace
    if ws is None:
        raise Conflict("alias changes need a workspace", code="serving.no_workspace")
    return ws


def _actor(who: Principal) -> str:
    return make_actor("api", who.name)


async def _optional_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    return {} if not raw.strip() else await read_json(request)


@router.post("/reload", summary="Reload every model now", responses=_ERRORS)
async def reload_all(request: Request) -> dict[str, Any]:
    """Re-read every alias and rollout and swap in what changed, without dropping requests (role: admin)."""
    who = require(request, "admin")
    report = await call_op(ops.reload_models, _live(request))
    logger.info("reload of all models by %s", who.name)
    return {"models": report}


@router.post("/models/{name}/reload", summary="Reload one model now", responses=_ERRORS)
async def reload_model(name: str, request: Request) -> dict[str, Any]:
    """Re-read ``name``'s alias and rollout; load and swap in a moved version (role: admin)."""
    require(request, "admin")
    return await call_op(ops.reload_models, _live(request), name)


@router.post("/models/{name}/aliases", summary="Move an alias", responses=_ERRORS, openapi_extra=_body_schema(AliasRequest))
async def set_alias(name: str, request: Request) -> dict[str, Any]:
    """Point an alias at a version (``champion`` goes through the registry's gated promotion), then reload (role: admin)."""
    who = require(request, "admin")
    check_model_name(name)
    body = parse_body(AliasRequest, await read_json(request))
    move = await call_op(
        lambda: ops.move_alias(
            _workspace(request),
            name,
            body.alias,
            body.version,
            reason=body.reason,
            actor=_actor(who),
            force=body.force,
            server=_live(request),
        )
    )
    return {"changes": [c.to_dict() for c in move.changes], "reload": move.reload}


@router.get("/rollouts/{name}", summary="Rollout status", responses=_ERRORS)
async def rollout_status(name: str, request: Request) -> dict[str, Any]:
    """The latest rollout of ``name`` with every step, and the live window statistics per variant (role: viewer)."""
    require(request, "viewer")
    status = await call_op(lambda: ops.rollout_status(request.app.state.workspace, name, server=_live(request)))
    return status.to_dict()


@router.post("/rollouts/{name}/start", summary="Start a rollout", responses=_ERRORS, openapi_extra=_body_schema(RolloutStartRequest))
async def rollout_start(name: str, request: Request) -> dict[str, Any]:
    """Start rolling out ``name``'s challenger with the spec's policy, overridden by the body (role: admin)."""
    who = require(request, "admin")
    check_model_name(name)
    body = parse_body(RolloutStartRequest, await _optional_body(request))
    st = await call_op(
        lambda: ops.start_rollout(request.app.state.workspace, name, body.model_dump(), actor=_actor(who), server=_live(request))
    )
    return {"rollout": st.to_dict()}


async def _action(name: str, request: Request, action: str) -> dict[str, Any]:
    who = require(request, "admin")
    ws, live, actor = request.app.state.workspace, _live(request), _actor(who)
    if action == "weight":
        w = parse_body(WeightRequest, await read_json(request))
        st = await call_op(lambda: ops.set_rollout_weight(ws, name, w.weight, reason=w.reason, actor=actor, server=live))
    else:
        body = parse_body(RolloutActionRequest, await _optional_body(request))
        if action == "promote":
            st = await call_op(lambda: ops.promote_rollout(ws, name, reason=body.reason, force=body.force, actor=actor, server=live))
        else:
            st = await call_op(lambda: ops.abort_rollout(ws, name, reason=body.reason, actor=actor, server=live))
    return {"rollout": st.to_dict()}


@router.post(
    "/rollouts/{name}/promote", summary="Promote the challenger", responses=_ERRORS, openapi_extra=_body_schema(RolloutActionRequest)
)
async def rollout_promote(name: str, request: Request) -> dict[str, Any]:
    """Make the challenger the champion through the registry's gate (``force`` to override, recorded) (role: admin)."""
    return await _action(name, request, "promote")


@router.post("/rollouts/{name}/abort", summary="Abort the rollout", responses=_ERRORS, openapi_extra=_body_schema(RolloutActionRequest))
async def rollout_abort(name: str, request: Request) -> dict[str, Any]:
    """All traffic back to the champion at once (role: admin)."""
    return await _action(name, request, "abort")


@router.post(
    "/rollouts/{name}/weight",
    summary="Set the challenger share (blue/green switch)",
    responses=_ERRORS,
    openapi_extra=_body_schema(WeightRequest),
)
async def rollout_weight(name: str, request: Request) -> dict[str, Any]:
    """Set the challenger share now; for blue/green, 100 = green and 0 = back to blue (role: admin)."""
    return await _action(name, request, "weight")


@router.post("/rollouts/{name}/evaluate", summary="Evaluate the rollout now", responses=_ERRORS)
async def rollout_evaluate(name: str, request: Request) -> dict[str, Any]:
    """Apply the SLO rules once now instead of waiting for the next poll (role: admin)."""
    require(request, "admin")
    evaluation = await call_op(ops.evaluate_rollout, _live(request), name)
    return evaluation.to_dict()
