"""Health, readiness and metrics endpoints, plus the serving app's lifecycle and middleware.

``setup(app)`` (called by :func:`steward.api.app.create_app`) wires:

* the :class:`~steward.serving.server.ModelServer` (``app.state.model_server``), started
  and stopped with the app's lifespan;
* API keys (``app.state.api_keys``);
* one pure-ASGI middleware for every request: request id (``X-Request-ID`` in and out,
  and in every log line), body size limit (413 problem+json), RED metrics by route,
  an optional JSON access log line and an OpenTelemetry span.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from steward._primitives import PROBLEM_MEDIA_TYPE, problem_body, request_id
from steward.api.auth import ApiKeys, load_keys, require
from steward.backends.health import RETRY_AFTER_S, probe_backends
from steward.backends.readiness import backend_openers
from steward.observability.logging import request_id_var
from steward.observability.metrics import CONTENT_TYPE, ServingMetrics
from steward.observability.tracing import get_tracer
from steward.serving.server import ModelServer
from steward.spec import ServingSpec

__all__ = ["ServingMiddleware", "router", "setup"]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("steward.access")

router = APIRouter(tags=["health"])

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_RID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _server(request: Request) -> ModelServer:
    server: ModelServer = request.app.state.model_server
    return server


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    """Always 200 while the event loop runs (a hung or dead process fails it)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: every configured model is loaded and every configured backend answers",
    responses={503: {"description": "Not ready (problem+json with per-model and per-backend state)", "content": {PROBLEM_MEDIA_TYPE: {}}}},
)
async def readyz(request: Request) -> Response:
    """200 when every configured model is loaded and every backend answers; 503 (problem+json) otherwise.

    Backends are the metadata store, and the online store, counters/cache and stream when steward.yaml
    gives them a server URL. Each is probed anew (at most once a second, in threads, two seconds at most),
    so readiness comes back by itself when a server does.

    A model serving a fallback because its alias's version fails verification is ready but
    ``"status": "degraded"`` (still 200: it serves; the reason is in ``models.NAME.degraded``).
    """
    server = _server(request)
    state = server.readiness()
    backends = await _backend_states(request)
    state["backends"] = backends
    down = sorted(name for name, b in backends.items() if not b["ok"])
    if state["ready"] and not down:
        return JSONResponse({"status": "degraded" if state.get("degraded") else "ready", **state})
    state["ready"] = False
    if down:
        detail = "; ".join(f"{name}: {backends[name]['reason']}" for name in down)
        body = problem_body(503, "serving.not_ready", f"a backend is down: {detail}", extra=state)
        return JSONResponse(body, status_code=503, media_type=PROBLEM_MEDIA_TYPE, headers={"Retry-After": str(RETRY_AFTER_S)})
    detail = "no model is configured" if not state["models"] else "not every configured model is loaded"
    body = problem_body(503, "serving.not_ready", detail, extra=state)
    return JSONResponse(body, status_code=503, media_type=PROBLEM_MEDIA_TYPE)


_PROBE_TTL_S = 1.0


async def _backend_states(request: Request) -> dict[str, dict[str, Any]]:
    ws = request.app.state.workspace
    if ws is None:
        return {}
    state = request.app.state
    cached: tuple[float, dict[str, dict[str, Any]]] | None = getattr(state, "backend_probe", None)
    now = time.monotonic()
    if cached is not None and now - cached[0] < _PROBE_TTL_S:
        return cached[1]
    # probes block (a round trip each, a connect timeout for a dead server): off the event loop
    result = await asyncio.to_thread(probe_backends, backend_openers(ws))
    state.backend_probe = (time.monotonic(), result)
    return result


@router.get("/metrics", summary="Prometheus metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    """The Prometheus text exposition (public unless ``serving.auth.public_metrics`` is off)."""
    spec_auth = getattr(request.app.state, "serving_public_metrics", True)
    if not spec_auth:
        require(request, "viewer")
    m: ServingMetrics = request.app.state.serving_metrics
    _server(request).ready  # noqa: B018 - refreshes the readiness gauge
    return Response(m.render(), media_type=CONTENT_TYPE)


def _problem_bytes(status: int, code: str, detail: str, instance: str) -> bytes:
    return json.dumps(problem_body(status, code, detail, instance=instance)).encode()


class _TooLarge(Exception):
    pass


class ServingMiddleware:
    """Request id, body size limit, RED metrics, access log and tracing, in one pure-ASGI layer.

    Args:
        app: The wrapped ASGI app.
        max_body_bytes: Larger bodies get 413 (by ``Content-Length`` up front, or while streaming).
        metrics: Where HTTP RED metrics go.
        access_log: Emit one ``steward.access`` log line per request.
        tracer: An OpenTelemetry tracer, or None for no spans.
        sample_ratio: Share of requests traced.
        self_traced: Paths whose handlers record their own span (e.g. the LLM gateway's ``llm.chat``, tagged with
            the request id): no HTTP span for them, which halves the tracing cost of each such request. A live
            set: routers' ``setup`` functions add to it through ``app.state.self_traced_paths``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        metrics: ServingMetrics,
        access_log: bool = True,
        tracer: Any = None,
        sample_ratio: float = 1.0,
        self_traced: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.metrics = metrics
        self.access_log = access_log
        self.tracer = tracer
        self.sample_ratio = sample_ratio
        self.self_traced = self_traced
        # labels() takes a lock and builds a key on every call: keep the children (routes x methods x statuses is small).
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        rid = ""
        length = None
        for k, v in scope.get("headers", ()):
            if k == b"x-request-id":
                cand = v.decode("latin-1")
                rid = cand if _RID.match(cand) else ""
            elif k == b"content-length":
                with contextlib.suppress(ValueError):
                    length = int(v)
        rid = rid or request_id()
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        status = {"code": 500, "started": False}
        rid_header = (b"x-request-id", rid.encode())
        path = scope.get("path", "")

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], rid_header]
            await send(message)

        async def reject(code: int, err: str, detail: str) -> None:
            self.metrics.http_rejected.labels(err).inc()
            body = _problem_bytes(code, err, detail, path)
            await send_wrapper(
                {
                    "type": "http.response.start",
                    "status": code,
                    "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())],
                }
            )
            await send_wrapper({"type": "http.response.body", "body": body})

        span_cm: Any = None
        if self.tracer is not None and path not in self.self_traced and (self.sample_ratio >= 1.0 or random.random() < self.sample_ratio):
            span_cm = self.tracer.start_as_current_span(
                f"{scope.get('method', 'GET')} {path}", attributes={"http.request_id": rid, "http.target": path}
            )
        try:
            if span_cm is not None:
                span_cm.__enter__()
            if length is not None and length > self.max_body:
                await reject(413, "request.too_large", f"body of {length} bytes exceeds the limit of {self.max_body} bytes")
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:
                        raise _TooLarge
                return message

            try:
                await self.app(scope, limited_receive if length is None else receive, send_wrapper)
            except _TooLarge:
                if not status["started"]:
                    await reject(413, "request.too_large", f"body exceeds the limit of {self.max_body} bytes")
        finally:
            elapsed = time.perf_counter() - t0
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            children = self._children.get((template, method, status["code"]))
            if children is None:
                children = self._children[(template, method, status["code"])] = (
                    self.metrics.http_requests.labels(template, method, str(status["code"])),
                    self.metrics.http_duration.labels(template, method),
                )
            children[0].inc()
            children[1].observe(elapsed)
            if self.access_log and access_logger.isEnabledFor(logging.INFO):
                access_logger.info(
                    "%s %s %s",
                    method,
                    path,
                    status["code"],
                    extra={"status": status["code"], "duration_ms": round(elapsed * 1000, 3), "route": template},
                )
            if span_cm is not None:
                with contextlib.suppress(Exception):
                    from opentelemetry import trace

                    span = trace.get_current_span()
                    span.set_attribute("http.status_code", int(status["code"]))
                    span.set_attribute("http.route", template)
                span_cm.__exit__(None, None, None)
            request_id_var.reset(token)


def _tracer(app: FastAPI) -> Any:
    ws = app.state.workspace
    try:
        return get_tracer(ws, "steward.serving")
    except Exception:
        logger.exception("tracing is unavailable; serving without spans")
        return None


def _document_security(app: FastAPI) -> None:
    """Declare the API-key schemes in OpenAPI for every served-model (/v1/models/NAME, /v1/serving, /v2/models) and /v1/admin operation.

    Keys are checked in the handlers (constant time, with roles), not by FastAPI security
    dependencies, which would cost a dependency resolution on every prediction.
    """
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["HTTPBearer"] = {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"}
        schemes["APIKeyHeader"] = {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "The API key"}
        for path, ops in schema.get("paths", {}).items():
            # /v1/models and /v1/models/{model} are the gateway's OpenAI routes (gateway keys, not API keys)
            if path.startswith(("/v1/models/", "/v1/serving/", "/v1/admin", "/v2/models")) and path != "/v1/models/{model}":
                for op in ops.values():
                    if isinstance(op, dict):
                        op.setdefault("security", [{"HTTPBearer": []}, {"APIKeyHeader": []}])
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def setup(app: FastAPI) -> None:
    """Create (unless injected) the model server and keys; add the lifespan hooks and the middleware."""
    ws = app.state.workspace
    state = app.state
    serving: ServingSpec = getattr(state, "serving_spec", None) or (ws.spec.serving if ws is not None else ServingSpec())
    state.serving_spec = serving
    server: ModelServer | None = getattr(state, "model_server", None)
    if server is None:
        server = ModelServer(ws, serving, metrics=getattr(state, "serving_metrics", None))
        state.model_server = server
    state.serving_metrics = server.metrics
    if getattr(state, "api_keys", None) is None:
        state.api_keys = load_keys(serving.auth, ws.spec if ws is not None else None)
    elif not isinstance(state.api_keys, ApiKeys):
        raise TypeError("app.state.api_keys must be an ApiKeys")
    state.serving_public_metrics = serving.auth.public_metrics

    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with previous(a) as maybe_state:
            await server.start()
            try:
                yield maybe_state
            finally:
                await server.stop()

    app.router.lifespan_context = lifespan
    _document_security(app)
    tracer = _tracer(app) if serving.trace_sample_ratio > 0 and ws is not None else None
    if getattr(state, "self_traced_paths", None) is None:
        state.self_traced_paths = set()
    app.add_middleware(
        ServingMiddleware,  # type: ignore[arg-type]
        max_body_bytes=serving.max_body_bytes,
        metrics=server.metrics,
        access_log=serving.access_log,
        tracer=tracer,
        sample_ratio=serving.trace_sample_ratio,
        self_traced=state.self_traced_paths,
    )
