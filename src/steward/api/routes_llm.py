"""The OpenAI-compatible gateway over HTTP: ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``.

Thin edge: parse, authenticate (bearer gateway key), call
:class:`steward.llm.gateway.Gateway`, format. Bodies are read and written with
orjson (no pydantic model on the hot path); errors leave as problem+json, with
``Retry-After`` on rate limits and ``x-steward-guardrails`` when a guardrail
refused the request (422, code ``guardrail.<guard>``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from steward._primitives import PROBLEM_MEDIA_TYPE
from steward.errors import LimitExceeded, StewardError, ValidationFailed
from steward.llm.gateway import METRICS, Gateway, UnknownModel

__all__ = ["get_gateway", "router", "setup"]

logger = logging.getLogger(__name__)

router = APIRouter(tags=["llm"])

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


def _problem(request: Request, exc: StewardError) -> JSONResponse:
    headers = {}
    retry = exc.details.get("retry_after_s")
    if retry is not None:
        headers["retry-after"] = str(max(1, round(float(retry))))
    verdicts = exc.details.get("guardrails")
    if verdicts:
        headers["x-steward-guardrails"] = str(verdicts)
    return JSONResponse(
        exc.to_problem(instance=request.url.path), status_code=exc.http_status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions (plain, streamed as server-sent events, tools, JSON-schema outputs)."""
    gw = get_gateway(request)
    key = gw.authenticate(request.headers.get("authorization"))
    body = await _json(request)
    switch = request.headers.get("x-steward-cache")
    cache = None if switch is None else switch.strip().lower() not in ("off", "false", "0", "no")
    try:
        result = await gw.chat(body, key, cache=cache, trace=_request_id(request))
    except LimitExceeded as exc:
        return _problem(request, exc)
    except ValidationFailed as exc:
        if not exc.code.startswith("guardrail."):
            raise
        return _problem(request, exc)  # a guard refused: the problem carries the x-steward-guardrails header too
    if result.stream is not None:
        return StreamingResponse(result.stream, media_type="text/event-stream", headers={**result.headers, "cache-control": "no-cache"})
    return Response(orjson.dumps(result.response), media_type="application/json", headers=result.headers)


@router.post("/v1/embeddings", response_model=None)
async def embeddings(request: Request) -> Response:
    """OpenAI embeddings."""
    gw = get_gateway(request)
    key = gw.authenticate(request.headers.get("authorization"))
    body = await _json(request)
    try:
        result = await gw.embeddings(body, key, trace=_request_id(request))
    except LimitExceeded as exc:
        return _problem(request, exc)
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
