"""The agent over HTTP: run a task, read a run, grant approvals.

* ``POST /v1/agent/runs`` (viewer+): ``{"task": ..., "role"?: ..., "approval_tokens"?: [...]}``. The run's
  role is the caller key's role, or a lower one if asked; never higher.
* ``GET /v1/agent/runs/{run_id}`` (viewer+): the run with its steps.
* ``GET /v1/agent/approvals?status=pending`` (operator+): the approval queue.
* ``POST /v1/agent/approvals`` (admin): ``{"request_id": ...}`` or ``{"tool": ..., "arguments": {...}}``
  → a one-time token for exactly that call (shown once).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from steward import ops
from steward._primitives import make_actor
from steward.api.auth import Principal, load_keys, require
from steward.api.routes_llm import get_gateway
from steward.api.routes_models import body_schema, parse_body, read_json
from steward.errors import Conflict, ValidationFailed
from steward.llm.agent import Agent, Approvals, ToolGate, get_run

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(tags=["agent"])


class RunRequest(BaseModel):
    """Body of ``POST /v1/agent/runs``."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=4000)
    role: str | None = Field(default=None, description="Run with a lower role than the key's (never higher).")
    approval_tokens: list[str] = Field(default_factory=list, max_length=10)


class ApprovalGrant(BaseModel):
    """Body of ``POST /v1/agent/approvals``: a pending request id, or a tool call to approve directly."""

    model_config = ConfigDict(extra="forbid")

    request_id: str | None = None
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    ttl_s: float | None = Field(default=None, gt=0, le=86_400)


def _ws(request: Request) -> Any:
    ws = request.app.state.workspace
    if ws is None:
        raise Conflict("the API was started without a workspace", code="agent.no_workspace")
    return ws


def _principal(request: Request, role: str) -> Principal:
    if getattr(request.app.state, "api_keys", None) is None:
        ws = request.app.state.workspace
        request.app.state.api_keys = load_keys(ws.spec.serving.auth, ws.spec)
    return require(request, role)  # type: ignore[arg-type]


def _agent(request: Request) -> Any:
    agent = getattr(request.app.state, "agent", None)
    if agent is None:
        agent = Agent(_ws(request), gateway=get_gateway(request))
        request.app.state.agent = agent
    return agent


@router.post("/v1/agent/runs", openapi_extra=body_schema(RunRequest))
async def create_run(request: Request) -> dict[str, Any]:
    """Run a task with the caller's role (or a lower one) and return the finished run."""
    who = _principal(request, "viewer")
    body = parse_body(RunRequest, await read_json(request))  # after auth: no key is 401 whatever the body
    role = ops.agent_role(who, body.role)
    run = await _agent(request).run(body.task, role=role, actor=make_actor("api", who.name), approval_tokens=body.approval_tokens)
    out: dict[str, Any] = run.to_dict()
    return out


@router.get("/v1/agent/runs/{run_id}")
async def read_run(run_id: str, request: Request) -> dict[str, Any]:
    """A recorded run with its steps."""
    _principal(request, "viewer")
    return get_run(_ws(request), run_id)


@router.get("/v1/agent/approvals")
async def list_approvals(request: Request, status: str | None = None) -> dict[str, Any]:
    """The approval queue (never the tokens)."""
    _principal(request, "operator")
    return {"approvals": [a.to_dict() for a in Approvals(_ws(request)).list(status)]}


@router.post("/v1/agent/approvals", openapi_extra=body_schema(ApprovalGrant))
async def grant_approval(request: Request) -> dict[str, Any]:
    """Grant a one-time approval (admin only); the token is returned once and stored hashed."""
    who = _principal(request, "admin")
    body = parse_body(ApprovalGrant, await read_json(request))
    gate = ToolGate(_ws(request))
    admin = make_actor("api", who.name)
    if body.request_id:
        token, req = gate.approvals.grant(body.request_id, admin=admin, ttl_s=body.ttl_s)
    elif body.tool:
        token, req = gate.grant_call(body.tool, body.arguments, admin=admin, ttl_s=body.ttl_s)
    else:
        raise ValidationFailed(
            "give 'request_id', or 'tool' and 'arguments'", details={"errors": [{"field": "request_id", "message": "required"}]}
        )
    return {"token": token, "request": req.to_dict()}
