"""FastAPI application factory, problem+json errors and router registration.

Routers live in ``steward.api.routes_*`` modules, each exposing
``router: APIRouter``; a stage adds its module name to :data:`ROUTER_MODULES`.
Every error leaves as RFC 9457 problem+json: Steward's own errors with their status, an outside
server that is down (:class:`~steward.errors.BackendUnavailable`, or a client's connection error
that escaped its backend) as 503 with ``Retry-After``, anything else as a 500 problem, never
Starlette's plain-text "Internal Server Error".
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from steward._primitives import PROBLEM_MEDIA_TYPE, problem_body
from steward.api._openapi import GATEWAY_PATHS, complete_errors
from steward.backends.health import RETRY_AFTER_S, as_unavailable, client_connection_errors
from steward.errors import BackendUnavailable, StewardError
from steward.governance.signin import AttemptLimiter
from steward.observability.gcfreeze import freeze_long_lived

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["ROUTER_MODULES", "create_app", "problem"]

logger = logging.getLogger(__name__)

ROUTER_MODULES = (
    "routes_health",
    "routes_models",
    "routes_oip",
    "routes_admin",
    "routes_monitor",
    "routes_llm",
    "routes_messages",
    "routes_rag",
    "routes_agent",
    "routes_dashboard",
)


# stable codes for the framework's own HTTP errors
_HTTP_CODES = {
    400: "request.unreadable",
    404: "route.not_found",
    405: "route.method_not_allowed",
}


def problem(status: int, code: str, detail: str, *, instance: str | None = None, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem+json response (body from :func:`~steward.errors.problem_body`)."""
    body = problem_body(status, code, detail, instance=instance, extra=extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)


def _error_response(request: Request, exc: StewardError) -> JSONResponse:
    retry = exc.details.get("retry_after_s")
    if isinstance(exc, BackendUnavailable):
        # the outage is usually a restart or a failover: tell clients (and load balancers) when to come back
        retry = RETRY_AFTER_S if retry is None else retry
        # and /readyz must not answer "ready" from a probe cached before the outage was seen
        request.app.state.backend_probe = None
    headers = {"Retry-After": str(int(retry))} if isinstance(retry, int | float) else None
    return JSONResponse(
        exc.to_problem(instance=request.url.path), status_code=exc.http_status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def create_app(workspace: Workspace | None = None, **state: Any) -> FastAPI:
    """Build the Steward API.

    Args:
        workspace: The project; routers read it from ``app.state.workspace``.
        **state: Extra objects put on ``app.state`` (tests inject fakes of time, etc.).
    """
    app = FastAPI(title="Steward", version="1", description="Steward: models and LLMs in production.")
    app.state.workspace = workspace
    for key, value in state.items():
        setattr(app.state, key, value)

    if not hasattr(app.state, "auth_attempts"):
        app.state.auth_attempts = AttemptLimiter()

    @app.exception_handler(StewardError)
    async def _steward_error(request: Request, exc: StewardError) -> JSONResponse:
        return _error_response(request, exc)

    async def _client_error(request: Request, exc: Exception) -> JSONResponse:
        # a client library's connection error that escaped its backend: still an outage, not a bug
        mapped = as_unavailable(exc)
        if mapped is None:
            return await _internal_error(request, exc)
        logger.warning("%s %s: %s", request.method, request.url.path, mapped.message)
        return _error_response(request, mapped)

    for cls in client_connection_errors():
        app.add_exception_handler(cls, _client_error)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's last resort answers text/plain; say the same in problem+json (Starlette still logs the traceback)
        mapped = as_unavailable(exc)
        if mapped is not None:
            return _error_response(request, mapped)
        rid = getattr(request.state, "request_id", None)
        return problem(
            500,
            "internal.error",
            "the server failed to handle this request; the error is in its log" + (f" under request id {rid}" if rid else ""),
            instance=request.url.path,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"], "type": e["type"]} for e in exc.errors()
        ]
        fields = ", ".join(e["field"] for e in errors)
        return problem(422, "validation.failed", f"invalid request: {fields}", instance=request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI's own errors (no route 404, wrong method 405, an unreadable body 400): problem+json like every
        # other error, except on the gateway, whose OpenAI/Anthropic clients get the framework's shape there
        if GATEWAY_PATHS.match(request.url.path):
            return await http_exception_handler(request, exc)
        code = _HTTP_CODES.get(exc.status_code, f"http.{exc.status_code}")
        allowed = (exc.headers or {}).get("Allow")
        hint = f"allowed here: {allowed}" if allowed else "the routes are listed at /docs" if exc.status_code == 404 else None
        detail = f"{exc.detail}: {request.method} {request.url.path}"
        body = problem_body(exc.status_code, code, detail, hint=hint, instance=request.url.path)
        return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM_MEDIA_TYPE, headers=exc.headers)

    generate = app.openapi

    def _openapi() -> dict[str, Any]:
        # the routers' setups wrap this in turn (routes_health declares the key schemes)
        if app.openapi_schema is not None:
            return app.openapi_schema
        return complete_errors(generate())

    app.openapi = _openapi  # type: ignore[method-assign]

    for name in ROUTER_MODULES:
        qual = f"steward.api.{name}"
        if importlib.util.find_spec(qual) is None:
            continue
        module = importlib.import_module(qual)
        app.include_router(module.router)
        setup = getattr(module, "setup", None)
        if setup is not None:
            setup(app)
    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def _freeze_after_startup(a: Any) -> AsyncIterator[Any]:
        async with previous(a) as maybe_state:
            # everything loaded at start-up (models, stores, modules) lives as long as the server:
            # out of the garbage collector's full passes, which otherwise pause every request
            freeze_long_lived(collect=True)
            yield maybe_state

    app.router.lifespan_context = _freeze_after_startup
    return app
