"""Model endpoints: list, describe, predict, explain, report outcomes.

Served models are listed and described under ``/v1/serving/models``: ``GET /v1/models`` belongs to the
OpenAI-compatible gateway (:mod:`steward.api.routes_llm`), whose clients call it with gateway keys.
Predict, explain and outcomes stay under ``/v1/models/{name}/...`` (no gateway route takes those paths).

Thin edge over :class:`~steward.serving.server.ModelServer` (and :func:`steward.ops.describe_model`). The predict body is
parsed with orjson and validated by the server against the model's schema (every
bad field named, 422 problem+json) instead of through a generic pydantic model:
the row's fields differ per model, and this path is the one that has to be fast.
The request and response shapes are still declared for OpenAPI.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError
from starlette.middleware import Middleware

from steward import ops
from steward._primitives import PROBLEM_MEDIA_TYPE
from steward.api._offload import call_op
from steward.api.auth import ApiKeys, presented_key, require
from steward.errors import StewardError, ValidationFailed
from steward.serving.input_policy import warning_header
from steward.serving.server import ModelServer

__all__ = ["PredictFastPath", "body_schema", "parse_body", "read_json", "router", "run_predict", "setup"]

M = TypeVar("M", bound=BaseModel)

logger = logging.getLogger(__name__)

router = APIRouter(tags=["models"])


class PredictRequest(BaseModel):
    """One row (``row``) or many (``rows``). A row maps feature → value; a row holding only the model's
    entity keys gets its features from the online store. ``key`` keeps a caller on one rollout variant."""

    row: dict[str, Any] | None = Field(default=None, description="One row: feature → value (or entity keys only).")
    rows: list[dict[str, Any]] | None = Field(default=None, description="Several rows.")
    key: str | None = Field(default=None, description="Sticky routing key (also: header X-Steward-Key, or the rollout's sticky_key field).")


class RegressionPrediction(BaseModel):
    """One row's answer from a regression model."""

    value: float


class MulticlassPrediction(BaseModel):
    """One row's answer from a multiclass model: the predicted class and every class's probability (stored class order)."""

    label: str | int | bool
    probabilities: dict[str, float]


# a binary model answers P(positive) per row (a bare number, as before tasks existed)
Prediction = float | RegressionPrediction | MulticlassPrediction


class PredictResponse(BaseModel):
    """Answers in row order (their shape follows the model's task), and which version and variant answered."""

    request_id: str
    model: str
    version: str
    variant: str = Field(description="champion, challenger, A/B, blue/green")
    predictions: list[Prediction] = Field(
        description="Per row: P(positive) (binary), {value} (regression) or {label, probabilities} (multiclass)."
    )
    prediction: Prediction | None = Field(default=None, description="The answer, for a one-row request.")
    latency_ms: float


class ExplainRequest(BaseModel):
    """The row to explain."""

    row: dict[str, Any]


class ExplainResponse(BaseModel):
    """Local attributions: ``base_value`` + sum(``attributions``) = the raw score."""

    model: str
    version: str
    prediction: float
    base_value: float
    attributions: dict[str, float]
    space: str
    method: str


class OutcomeRequest(BaseModel):
    """An observed outcome for an earlier A/B request."""

    request_id: str
    outcome: str = Field(description="e.g. 'converted', 'late', 'on_time'")


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key", "content": {PROBLEM_MEDIA_TYPE: {}}},
    403: {"description": "Role too low", "content": {PROBLEM_MEDIA_TYPE: {}}},
    404: {"description": "Model not served", "content": {PROBLEM_MEDIA_TYPE: {}}},
    413: {"description": "Body too large", "content": {PROBLEM_MEDIA_TYPE: {}}},
    422: {"description": "Invalid request: every bad field is named in 'errors'", "content": {PROBLEM_MEDIA_TYPE: {}}},
    503: {"description": "Model not loaded yet", "content": {PROBLEM_MEDIA_TYPE: {}}},
}


def _server(request: Request) -> ModelServer:
    server: ModelServer = request.app.state.model_server
    return server


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, media_type="application/json")


def _body_error(message: str, field: str = "body") -> ValidationFailed:
    return ValidationFailed(
        f"invalid request: {field}", hint=message, details={"errors": [{"field": field, "message": message, "type": "value_error"}]}
    )


async def read_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _body_error(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _body_error("the body must be a JSON object")
    return data


@router.get("/v1/serving/models", summary="Served models")
async def list_models(request: Request) -> dict[str, Any]:
    """Every served model with its loaded versions and rollout state (role: viewer)."""
    require(request, "viewer")
    server = _server(request)
    return {"models": server.listing(), "ready": server.ready}


@router.get("/v1/serving/models/{name}", summary="One model: versions, aliases, schema, rollout", responses={404: _ERRORS[404]})
async def describe_model(name: str, request: Request) -> Response:
    """Loaded versions, registry versions and aliases, input schema and rollout state (role: viewer).

    When the registry cannot answer, the loaded state is still shown and ``registry`` says why with a
    stable code: ``{"state": "unavailable", "code": "backend.unavailable"}`` (or ``"not_found"``).
    """
    require(request, "viewer")
    server = _server(request)
    out = await call_op(ops.describe_model, request.app.state.workspace, name, server=server.live)
    return _json(out.to_dict())


@router.post(
    "/v1/models/{name}/predict",
    summary="Predict for one row or many",
    response_model=None,
    responses={200: {"model": PredictResponse}, **_ERRORS},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": PredictRequest.model_json_schema()}}}},
)
async def predict(name: str, request: Request) -> Response:
    """Validate against the model's schema, route by the rollout policy, micro-batch, predict, log (role: operator)."""
    # normally answered by PredictFastPath before FastAPI's router; this is the same logic, kept for
    # apps built without the fast path and for OpenAPI
    require(request, "operator")
    server = _server(request)
    with server.expect(name):
        data = await read_json(request)
        warnings: list[str] = []
        body = await run_predict(server, name, data, request.headers.get("x-steward-key"), request.state.request_id, warnings)
    response = _json(body)
    if warnings:
        response.headers["Warning"] = warning_header(warnings)
    return response


async def run_predict(
    server: ModelServer,
    name: str,
    data: dict[str, Any],
    header_key: str | None,
    request_id: str | None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """Check a parsed predict body, predict through ``server`` and return the response body.

    ``warnings``, when given, receives the input-policy warnings (for a ``Warning`` header).

    Raises:
        ValidationFailed: a bad body or rows (422, every bad field named; ``row.x`` for a one-row request).
        StewardError: whatever :meth:`ModelServer.predict` raises.
    """
    row, rows = data.get("row"), data.get("rows")
    if len(data) > 1 or ("row" not in data and "rows" not in data):
        extra = sorted(set(data) - {"row", "rows", "key"})
        if extra:
            raise ValidationFailed(
                f"invalid request: {', '.join(extra)}",
                details={"errors": [{"field": k, "message": "unknown field", "type": "extra_forbidden"} for k in extra]},
            )
    single = row is not None
    if single == (rows is not None):
        raise _body_error("send exactly one of 'row' (an object) or 'rows' (a list of objects)", "row")
    if single and not isinstance(row, dict):
        raise _body_error("'row' must be an object", "row")
    if not single and (not isinstance(rows, list) or not rows):
        raise _body_error("'rows' must be a non-empty list of objects", "rows")
    key = data.get("key") or header_key
    if key is not None and not isinstance(key, str | int):
        raise _body_error("'key' must be a string", "key")
    batch: list[Any] = [row] if single else list(rows or [])
    try:
        result = await server.predict(name, batch, key=None if key is None else str(key), request_id=request_id)
    except ValidationFailed as exc:
        errors = [e for e in exc.details.get("errors", []) if isinstance(e, dict) and isinstance(e.get("field"), str)]
        if single and errors:
            for e in errors:
                e["field"] = "row" + e["field"][len("rows.0") :] if e["field"].startswith("rows.0") else e["field"]
            exc.message = "invalid request: " + ", ".join(e["field"] for e in errors[:20])
        raise
    if warnings is not None:
        warnings.extend(result.warnings)
    body = result.to_dict()
    if single:
        body["prediction"] = result.predictions[0]
    return body


@router.post(
    "/v1/models/{name}/explain",
    summary="Local attributions for one row",
    response_model=None,
    responses={200: {"model": ExplainResponse}, **_ERRORS},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": ExplainRequest.model_json_schema()}}}},
)
async def explain(name: str, request: Request) -> Response:
    """TreeSHAP contributions for tree models, coefficient × value for linear ones (role: operator)."""
    require(request, "operator")
    data = await read_json(request)
    row = data.get("row")
    if not isinstance(row, dict):
        raise _body_error("'row' must be an object", "row")
    return _json(await _server(request).explain(name, row))


@router.post(
    "/v1/models/{name}/outcomes",
    summary="Report an outcome of an A/B request",
    response_model=None,
    responses={200: {"description": "The variant the outcome was counted against"}, **_ERRORS},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": OutcomeRequest.model_json_schema()}}}},
)
async def outcome(name: str, request: Request) -> dict[str, Any]:
    """Counts the outcome against the variant that served the request (``steward_ab_outcomes_total``) (role: operator)."""
    require(request, "operator")
    body = parse_body(OutcomeRequest, await read_json(request))
    variant = _server(request).record_outcome(name, body.request_id, body.outcome)
    return {"request_id": body.request_id, "variant": variant, "outcome": body.outcome}


def body_schema(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON body a route reads itself (with :func:`read_json` and :func:`parse_body`, after auth)."""
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def parse_body(model: type[M], data: dict[str, Any]) -> M:
    """Validate a parsed body against a pydantic model; a 422 naming every bad field otherwise (after auth, never before)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise ValidationFailed("invalid request: " + ", ".join(e["field"] for e in errors), details={"errors": errors}) from None


# ---------------------------------------------------------------------------------------------
# the fast path: POST /v1/models/{name}/predict without FastAPI's router
# ---------------------------------------------------------------------------------------------
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PREFIX = "/v1/models/"
_SUFFIX = "/predict"
_JSON_HEADERS = b"application/json"
_PROBLEM_HEADERS = PROBLEM_MEDIA_TYPE.encode()


def _problem_body(exc: StewardError, instance: str) -> bytes:
    body = exc.to_problem(instance=instance)
    try:
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(body, default=str).encode()


class PredictFastPath:
    """Answer ``POST /v1/models/{name}/predict`` in plain ASGI, ahead of FastAPI's router.

    Per request, FastAPI's routing, exception middleware, request object and endpoint
    machinery cost several times the model call. This layer does what the route does, with
    the same functions (:meth:`ApiKeys.check_key`, :func:`run_predict`, so the same auth,
    422 problem+json naming every bad field, routing, batching, metrics and prediction log)
    and writes the response with orjson. It sits inside the serving middleware (request id,
    body limit, HTTP RED metrics, access log and tracing still apply) and sets
    ``scope["route"]`` to the declared route so metrics keep the route template. Any other
    request passes through untouched; the FastAPI route stays declared for OpenAPI and as
    the fallback.

    Args:
        app: The wrapped ASGI app.
        fastapi_app: The application whose ``state`` holds ``model_server`` and ``api_keys``.
    """

    def __init__(self, app: ASGIApp, *, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        # the route object whose template the metrics and spans name
        self.route: Any = next(
            (
                r
                for r in router.routes
                if isinstance(r, APIRoute) and r.path == _PREFIX + "{name}" + _SUFFIX and "POST" in (r.methods or ())
            ),
            None,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or not path.startswith(_PREFIX)
            or not path.endswith(_SUFFIX)
            or "/" in (name := path[len(_PREFIX) : -len(_SUFFIX)])
            or not name
        ):
            await self.app(scope, receive, send)
            return
        state = self.fastapi_app.state
        server: ModelServer | None = getattr(state, "model_server", None)
        keys: ApiKeys | None = getattr(state, "api_keys", None)
        if server is None or keys is None:
            await self.app(scope, receive, send)
            return
        if self.route is not None:
            scope["route"] = self.route
        scope["path_params"] = {"name": name}
        authorization = x_api_key = steward_key = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                authorization = v.decode("latin-1")
            elif k == b"x-api-key":
                x_api_key = v.decode("latin-1")
            elif k == b"x-steward-key":
                steward_key = v.decode("latin-1")
        extra: list[tuple[bytes, bytes]] = []
        try:
            keys.check_key(presented_key(authorization, x_api_key), "operator")
            with server.expect(name):
                raw = await _read_body(receive)
                try:
                    data = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    raise _body_error(f"not valid JSON: {exc}") from None
                if not isinstance(data, dict):
                    raise _body_error("the body must be a JSON object")
                rid = scope.get("state", {}).get("request_id")
                warnings: list[str] = []
                body = orjson.dumps(await run_predict(server, name, data, steward_key, rid, warnings), option=orjson.OPT_SERIALIZE_NUMPY)
            status, ctype = 200, _JSON_HEADERS
            if warnings:
                extra = [(b"warning", warning_header(warnings).encode("latin-1"))]
        except StewardError as exc:
            status, ctype, body = exc.http_status, _PROBLEM_HEADERS, _problem_body(exc, path)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", b"%d" % len(body)), *extra],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts = [body]
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts.append(message.get("body", b""))
    return b"".join(parts)


def setup(app: FastAPI) -> None:
    """Put :class:`PredictFastPath` innermost among the app's middleware (inside the serving middleware)."""
    # add_middleware would make it the outermost layer; appended, it runs after request ids, limits and metrics
    app.user_middleware.append(Middleware(PredictFastPath, fastapi_app=app))  # type: ignore[arg-type]
