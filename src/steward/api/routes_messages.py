"""Anthropic's Messages API on the gateway: ``POST /v1/messages``, for the official ``anthropic`` client.

Same gateway as ``/v1/chat/completions`` (aliases and fallbacks, budgets and rate limits,
guardrails, cache, usage and traces): the request is translated into a chat-completions body
(:func:`steward.llm.gateway.chat_body`), answered by :meth:`Gateway.chat`, and translated back
(a message, or Anthropic's stream events). Auth: a gateway key in ``x-api-key`` (what the
anthropic client sends) or ``Authorization: Bearer``; ``anthropic-version`` is accepted and
ignored (one shape is served). Errors leave in Anthropic's shape
``{"type": "error", "error": {"type", "message"}}`` with the statuses the OpenAI routes use
(401 ``authentication_error``, 403 ``permission_error``, 400/422 ``invalid_request_error``, 404
``not_found_error``, 429 ``rate_limit_error`` with ``Retry-After``, 5xx ``api_error``) so the
client raises its typed errors; Steward's code rides along as ``steward_code``.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from steward.api.routes_llm import _json, _request_id, error_shaped_route, get_gateway, openai_error
from steward.errors import AuthError, StewardError
from steward.llm.gateway import chat_body, message_events, to_message

__all__ = ["anthropic_error", "router", "setup"]

logger = logging.getLogger(__name__)

_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error"}


def anthropic_error(exc: StewardError) -> JSONResponse:
    """``exc`` in Anthropic's error shape; status and headers as the OpenAI routes give them (one mapping)."""
    shaped = openai_error(exc)
    inner: dict[str, Any] = orjson.loads(bytes(shaped.body))["error"]
    status = shaped.status_code
    kind = _TYPES.get(status) or ("invalid_request_error" if status < 500 else ("overloaded_error" if status == 529 else "api_error"))
    error = {"type": kind, "message": inner["message"], "steward_code": exc.code}
    if inner.get("param"):
        error["param"] = inner["param"]
    headers = {k: v for k, v in shaped.headers.items() if k in ("retry-after", "x-steward-guardrails")}
    return JSONResponse({"type": "error", "error": error}, status_code=status, headers=headers)


router = APIRouter(tags=["llm"], route_class=error_shaped_route(anthropic_error, "Anthropic"))


def setup(app: FastAPI) -> None:
    """The gateway records its own span for ``/v1/messages``: the serving middleware skips its HTTP span."""
    self_traced = getattr(app.state, "self_traced_paths", None)
    if self_traced is not None:
        self_traced.add("/v1/messages")


def _authorization(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return f"Bearer {key.strip()}"
    auth = request.headers.get("authorization")
    if auth is None:
        raise AuthError("missing gateway key", hint="send 'x-api-key: <gateway key>' or 'Authorization: Bearer <gateway key>'")
    return auth


@router.post("/v1/messages", response_model=None, summary="Anthropic: create a message (gateway aliases)")
async def messages(request: Request) -> Response:
    """Anthropic Messages (plain, or streamed as Anthropic's server-sent events) over the gateway."""
    gw = get_gateway(request)
    key = gw.authenticate(_authorization(request))
    body = await _json(request)
    chat = chat_body(body)
    stops = list(chat.get("stop") or [])
    switch = request.headers.get("x-steward-cache")
    cache = None if switch is None else switch.strip().lower() not in ("off", "false", "0", "no")
    result = await gw.chat(chat, key, cache=cache, trace=_request_id(request))
    if result.stream is not None:
        events = message_events(result.stream, chat["model"], stops)
        return StreamingResponse(events, media_type="text/event-stream", headers={**result.headers, "cache-control": "no-cache"})
    assert result.response is not None
    return Response(orjson.dumps(to_message(result.response, chat["model"], stops)), media_type="application/json", headers=result.headers)
