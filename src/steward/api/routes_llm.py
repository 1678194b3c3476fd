"""The OpenAI-compatible gateway over HTTP: ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``.

Thin edge: parse, authenticate (bearer gateway key), call
:class:`steward.llm.gateway.Gateway`, format. Bodies are read and written with
orjson (no pydantic model on the hot path). Errors leave in OpenAI's shape
``{"error": {"message", "type", "param", "code"}}`` with OpenAI's statuses, so
official clients raise their typed errors (``RateLimitError``, ``BadRequestError``
...): 429 ``insufficient_quota`` (budget), 429 ``rate_limit_exceeded`` with
``Retry-After`` (our limits, or every provider rate-limited), 400
``invalid_request_error`` naming the ``param``, 401 ``invalid_api_key``, 404
``model_not_found``. Steward's own code and details ride along in the error
object (``steward_code`` and the details' keys). A guardrail refusal stays 422
(code ``content_policy_violation``) with the ``x-steward-guardrails`` header.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute

from steward.errors import AuthError, BackendUnavailable, Forbidden, LimitExceeded, NotFound, StewardError, ValidationFailed
from steward.llm.gateway import METRICS, BudgetExceeded, Gateway, UnknownModel

__all__ = ["error_shaped_route", "get_gateway", "openai_error", "router", "setup"]

logger = logging.getLogger(__name__)

BACKEND_RETRY_AFTER_S = 2  # an outage is usually a restart or a failover: when to come back (as api/app.py says)


def _openai_kind(exc: StewardError) -> tuple[int, str, str | None, str | None]:
    """(status, type, param, code) of OpenAI's error object for a Steward error."""
    details = exc.details
    if isinstance(exc, BudgetExceeded):
        return 429, "insufficient_quota", None, "insufficient_quota"
    if isinstance(exc, LimitExceeded) or exc.http_status == 429:  # our limits, or every provider rate-limited
        unit = details.get("unit")
        return 429, "tokens" if unit == "tokens" else "requests", None, "rate_limit_exceeded"
    if isinstance(exc, Forbidden):
        return 403, "permission_error", None, None
    if isinstance(exc, AuthError):
        return 401, "invalid_request_error", None, "invalid_api_key"
    if isinstance(exc, UnknownModel):
        return 404, "invalid_request_error", "model", "model_not_found"
    if isinstance(exc, NotFound):
        return 404, "invalid_request_error", None, "not_found"
    errors = details.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    param = first.get("field")
    param = str(param) if param is not None else None
    if isinstance(exc, ValidationFailed) and exc.code.startswith("guardrail."):
        return 422, "invalid_request_error", param, "content_policy_violation"
    if exc.http_status < 500:
        return 400, "invalid_request_error", param, None
    return exc.http_status, "api_error" if exc.http_status != 502 else "upstream_error", param, None


def openai_error(exc: StewardError) -> JSONResponse:
    """``exc`` as OpenAI's ``{"error": {...}}`` body, status and headers (``Retry-After``, ``x-steward-guardrails``)."""
    status, kind, param, code = _openai_kind(exc)
    message = exc.message if not exc.hint else f"{exc.message} ({exc.hint})"
    extra = {k: v for k, v in exc.details.items() if k not in ("message", "type", "param", "code")}
    error = {"message": message, "type": kind, "param": param, "code": code, "steward_code": exc.code, **extra}
    headers = {}
    retry = exc.details.get("retry_after_s")
    if retry is None and isinstance(exc, BackendUnavailable):
        retry = BACKEND_RETRY_AFTER_S
    if retry is not None:
        headers["retry-after"] = str(max(1, round(float(retry))))
    verdicts = exc.details.get("guardrails")
    if verdicts:
        headers["x-steward-guardrails"] = str(verdicts)
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def error_shaped_route(shape: Callable[[StewardError], Response], protocol: str) -> type[APIRoute]:
    """An APIRoute class whose Steward errors leave in a protocol's own shape (``shape``), not problem+json.

    The app's problem+json handlers never see these errors, so a backend outage also resets the cached
    readiness probe here, as the app's handler does: /readyz must not answer "ready" from a probe taken before it.
    """

    class _ShapedErrorRoute(APIRoute):
        def get_route_handler(self) -> Any:
            handler = super().get_route_handler()

            async def route(request: Request) -> Response:
                try:
                    response: Response = await handler(request)
                except StewardError as exc:
                    if isinstance(exc, BackendUnavailable):
                        request.app.state.backend_probe = None
                    return shape(exc)
                return response

            return route

    _ShapedErrorRoute.__name__ = _ShapedErrorRoute.__qualname__ = f"{protocol}ErrorRoute"
    return _ShapedErrorRoute


router = APIRouter(tags=["llm"], route_class=error_shaped_route(openai_error, "OpenAI"))

SELF_TRACED = ("/v1/chat/completions", "/v1/embeddings")


def setup(app: FastAPI) -> None:
    """Leave a slot for the gateway, expose its metrics on ``/metrics``, and close it on shutdown.

    The gateway itself is created on the first request (or injected as ``create_app(ws, llm_gateway=...)``).
    """
    if not hasattr(app.state, "llm_gateway"):
        app.state.llm_gateway = None
    # The gateway records its own span per request (tagged with the request id): the serving middleware skips its HTTP span.
    self_traced = getattr(app.state, "self_traced_paths", None)
    if self_traced is not None:
        self_traced.update(SELF_TRACED)
    registry = getattr(getattr(app.state, "serving_metrics", None), "registry", None)
    if registry is not None:
        for collector in METRICS:
            with contextlib.suppress(ValueError):  # already registered in this registry
                registry.register(collector)

    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with previous(a) as maybe_state:
            try:
                yield maybe_state
            finally:
                gw = getattr(app.state, "llm_gateway", None)
                if gw is not None:
                    await gw.aclose()  # flush usage rows and spans, close upstream connections

    app.router.lifespan_context = lifespan


def get_gateway(request: Request) -> Gateway:
    """The app's gateway, created from the workspace on first use."""
    gw: Gateway | None = getattr(request.app.state, "llm_gateway", None)
    if gw is None:
        ws = request.app.state.workspace
        if ws is None:
            raise StewardError(
                "the API was started without a workspace", code="llm.no_workspace", hint="start it with create_app(workspace)"
            )
        gw = Gateway(ws)
        request.app.state.llm_gateway = gw
    return gw


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ValidationFailed(
            "the request body is not valid JSON", details={"errors": [{"field": "body", "message": "invalid JSON"}]}
        ) from None
    if not isinstance(body, dict):
        raise ValidationFailed(
            "the request body must be a JSON object", details={"errors": [{"field": "body", "message": "not an object"}]}
        )
    return body


def _request_id(request: Request) -> dict[str, Any] | None:
    # Set by the serving middleware (X-Request-ID in and out): links the gateway's span to the HTTP request and its logs.
    rid = request.scope.get("state", {}).get("request_id")
    return {"http.request_id": rid} if rid else None


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions (plain, streamed as server-sent events, tools, JSON-schema outputs)."""
    gw = get_gateway(request)
    key = gw.authenticate(request.headers.get("authorization"))
    body = await _json(request)
    switch = request.headers.get("x-steward-cache")
    cache = None if switch is None else switch.strip().lower() not in ("off", "false", "0", "no")
    result = await gw.chat(body, key, cache=cache, trace=_request_id(request))
    if result.stream is not None:
        return StreamingResponse(result.stream, media_type="text/event-stream", headers={**result.headers, "cache-control": "no-cache"})
    return Response(orjson.dumps(result.response), media_type="application/json", headers=result.headers)


@router.post("/v1/embeddings", response_model=None)
async def embeddings(request: Request) -> Response:
    """OpenAI embeddings."""
    gw = get_gateway(request)
    key = gw.authenticate(request.headers.get("authorization"))
    body = await _json(request)
    result = await gw.embeddings(body, key, trace=_request_id(request))
    return Response(orjson.dumps(result), media_type="application/json")


def _model_object(name: str, chain: list[str]) -> dict[str, Any]:
    # "created" is required by OpenAI's Model object; an alias has no creation time, so 0 (the epoch) says "unknown"
    return {"id": name, "object": "model", "created": 0, "owned_by": "steward", "fallbacks": chain}


@router.get("/v1/models", response_model=None, summary="OpenAI: list models (gateway aliases)")
async def models(request: Request) -> Response:
    """The aliases a key may call, as OpenAI model objects (bearer gateway key).

    Served ML models are listed at ``/v1/serving/models`` (API keys) and over the Open Inference Protocol at ``/v2``.
    """
    gw = get_gateway(request)
    gw.authenticate(request.headers.get("authorization"))
    data = [_model_object(name, list(chain)) for name, chain in sorted(gw.spec.aliases.items())]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")


@router.get("/v1/models/{model:path}", response_model=None, summary="OpenAI: retrieve a model (gateway alias)")
async def retrieve_model(model: str, request: Request) -> Response:
    """One alias as an OpenAI model object (bearer gateway key); 404 ``llm.unknown_model`` otherwise."""
    gw = get_gateway(request)
    gw.authenticate(request.headers.get("authorization"))
    chain = gw.spec.aliases.get(model)
    if chain is None:
        raise UnknownModel(f"model {model!r} is not a gateway alias", hint="GET /v1/models lists the aliases")
    return Response(orjson.dumps(_model_object(model, list(chain))), media_type="application/json")
