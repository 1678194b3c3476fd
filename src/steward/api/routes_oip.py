"""Open Inference Protocol v2 (REST) for every served model: the protocol of KServe, Seldon, Triton and MLServer.

Routes (``/v2``): server metadata, liveness and readiness, model metadata and readiness, and
``infer``, each also under ``/versions/{version}`` (that registered version, if it is loaded: the
champion or the challenger; 404 otherwise). An inference request carries one tensor per feature
(see :mod:`steward.api._oip_tensors`); its rows then take exactly the native predict path,
:meth:`ModelServer.predict <steward.serving.predict.PredictPath.predict>`: same validation,
rollout routing (canary, A/B, shadow, blue/green; sticky key from ``parameters.key`` or
``X-Steward-Key``), micro-batching, prediction log and metrics. Auth is the native one: API
keys, ``viewer`` for model metadata, ``operator`` for ``infer``; health, readiness and server
metadata are public like ``/healthz`` and ``/readyz``.

Errors use the protocol's body ``{"error": "..."}`` (plus Steward's stable ``code``) naming the
tensor or field; a malformed request is a 400 (the native API's 422).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from steward.api._oip_tensors import (
    decode_inputs,
    encode_outputs,
    input_metadata,
    output_metadata,
    output_names,
    rename_row_errors,
    rows_from_tensors,
    tensor_errors,
    to_binary,
)
from steward.api.auth import require
from steward.errors import BackendUnavailable, NotFound, StewardError, ValidationFailed
from steward.serving.server import ModelServer, ServedModel, VariantSlot

__all__ = ["router"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")

router = APIRouter(prefix="/v2", tags=["open inference protocol v2"])

_HEADER_LENGTH = "inference-header-content-length"


# -- OpenAPI shapes (bodies are parsed by hand: see routes_models for why) -------------------------
class OIPError(BaseModel):
    """The protocol's error body."""

    error: str = Field(description="What is wrong, naming the tensor or field.")
    code: str | None = Field(default=None, description="Steward's stable error code.")


class TensorMetadata(BaseModel):
    """One input or output: name, datatype and shape (-1: any length)."""

    name: str
    datatype: str = Field(description="BOOL, INT8..INT64, UINT8..UINT64, FP16, FP32, FP64 or BYTES")
    shape: list[int]


class ServerMetadata(BaseModel):
    """``GET /v2``."""

    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    """``GET /v2/models/{name}``: loaded versions and the tensors the model takes and returns."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class LiveResponse(BaseModel):
    """Liveness of the server."""

    live: bool


class ReadyResponse(BaseModel):
    """Readiness of the server or of one model."""

    name: str | None = None
    ready: bool


class RequestInput(BaseModel):
    """One input tensor: a feature, shape [N] or [N, 1], ``data`` row-major (flat or nested)."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = Field(default=None, description="binary_data_size for the binary tensor extension")
    data: list[Any] | None = None


class RequestOutput(BaseModel):
    """An output to return (all of them when ``outputs`` is absent)."""

    name: str
    parameters: dict[str, Any] | None = Field(default=None, description="binary_data: true for the binary tensor extension")


class InferenceRequest(BaseModel):
    """``POST /v2/models/{name}/infer``. ``parameters.key`` is the sticky routing key."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    """One output tensor: ``probability`` and ``label`` (binary), ``probabilities`` [N, C] (multiclass), ``value`` (regression)."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    """The answer; ``parameters`` carries Steward's request id and the rollout variant that answered."""

    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any]
    outputs: list[ResponseOutput]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Malformed request: the message names the tensor or field",
        401: "Missing or invalid API key",
        403: "Role too low",
        404: "Model or version not served",
        413: "Body too large",
        429: "Too many rows, or a client locked out after too many wrong keys (Retry-After)",
        503: "Not loaded yet",
    }
    return {s: {"model": OIPError, "description": text[s]} for s in statuses}


# -- helpers ---------------------------------------------------------------------------------------
def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, media_type="application/json")


def _oip_errors(handler: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    """Answer Steward errors with the protocol's ``{"error": ...}`` body (400 where the native API says 422)."""

    @functools.wraps(handler)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return await handler(*args, **kwargs)
        except StewardError as exc:
            status = 400 if exc.http_status == 422 else exc.http_status
            message = f"{exc.message} ({exc.hint})" if exc.hint and exc.http_status in (401, 403, 404, 429, 503) else exc.message
            response = _json({"error": message, "code": exc.code}, status)
            retry = exc.details.get("retry_after_s")  # a locked-out client (too many wrong keys) is told when to come back
            if isinstance(retry, int | float):
                response.headers["Retry-After"] = str(max(1, math.ceil(retry)))
            return response

    return wrapped


def _server(request: Request) -> ModelServer:
    server: ModelServer = request.app.state.model_server
    return server


def _slot(server: ModelServer, name: str, version: str | None) -> tuple[ServedModel, VariantSlot]:
    """The served model and the slot a request for ``version`` (None: the champion) describes."""
    m = server.served(name)
    if m.champion is None:
        raise BackendUnavailable(f"model {name} is not loaded yet", code="serving.not_loaded", hint=m.last_error or "see /readyz")
    if version is None:
        return m, m.champion
    for slot in (m.champion, m.challenger):
        if slot is not None and slot.version == version:
            return m, slot
    raise _version_missing(m, version)


def _version_missing(m: ServedModel, version: str) -> StewardError:
    loaded = ", ".join(s.version for s in (m.champion, m.challenger) if s is not None)
    return NotFound(f"version {version} of model {m.name} is not loaded", code="serving.version_not_loaded", hint=f"loaded: {loaded}")


def _task(slot: VariantSlot) -> str:
    # runtimes without a declared task are the binary classifiers every served model is today
    task = getattr(slot.runtime, "task", "binary")
    return task if task in ("binary", "multiclass", "regression") else "binary"


def _metadata(m: ServedModel, slot: VariantSlot, version: str | None) -> dict[str, Any]:
    versions = [version] if version is not None else [s.version for s in (m.champion, m.challenger) if s is not None]
    return {
        "name": m.name,
        "versions": versions,
        "platform": f"steward_{getattr(slot.runtime, 'flavor', 'unknown')}",
        "inputs": input_metadata(slot.runtime.schema),
        "outputs": output_metadata(_task(slot)),
    }


async def _read(request: Request) -> tuple[dict[str, Any], bytes]:
    """The JSON header and the binary tail (binary tensor extension) of an inference request."""
    raw = await request.body()
    length = request.headers.get(_HEADER_LENGTH)
    binary = b""
    if length is not None:
        if not length.isdigit() or int(length) > len(raw):
            raise tensor_errors(
                [{"field": "Inference-Header-Content-Length", "message": "not a length within the body", "type": "value_error"}]
            )
        raw, binary = raw[: int(length)], raw[int(length) :]
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise tensor_errors([{"field": "body", "message": f"not valid JSON: {exc}", "type": "value_error"}]) from None
    if not isinstance(body, dict):
        raise tensor_errors([{"field": "body", "message": "must be a JSON object", "type": "value_error"}])
    return body, binary


# -- routes ----------------------------------------------------------------------------------------
@router.get("", summary="Server metadata", response_model=ServerMetadata)
async def server_metadata() -> dict[str, Any]:
    """Name, version and protocol extensions of this server (public)."""
    try:
        version = importlib.metadata.version("steward")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": "steward", "version": version, "extensions": ["binary_tensor_data"]}


@router.get("/health/live", summary="Server liveness", response_model=LiveResponse)
async def live() -> dict[str, Any]:
    """200 while the process answers (public)."""
    return {"live": True}


@router.get("/health/ready", summary="Server readiness", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def ready(request: Request) -> Response:
    """200 when every configured model is loaded, 503 before (public; as ``/readyz``)."""
    ok = _server(request).ready
    return _json({"ready": ok}, 200 if ok else 503)


@router.get("/models/{name}/ready", summary="Model readiness", response_model=ReadyResponse, responses=_errors(404, 503))
@_oip_errors
async def model_ready(name: str, request: Request) -> Response:
    """200 when the model's champion is loaded, 503 before, 404 for a model not served (public)."""
    _slot(_server(request), name, None)
    return _json({"name": name, "ready": True})


@router.get(
    "/models/{name}/versions/{version}/ready", summary="Model version readiness", response_model=ReadyResponse, responses=_errors(404, 503)
)
@_oip_errors
async def model_version_ready(name: str, version: str, request: Request) -> Response:
    """200 when that version is loaded (champion or challenger), 404 otherwise (public)."""
    _slot(_server(request), name, version)
    return _json({"name": name, "ready": True})


@router.get("/models/{name}", summary="Model metadata", response_model=ModelMetadata, responses=_errors(401, 403, 404, 429, 503))
@_oip_errors
async def model_metadata(name: str, request: Request) -> Response:
    """Loaded versions, input tensors (one per feature) and output tensors (role: viewer)."""
    require(request, "viewer")
    m, slot = _slot(_server(request), name, None)
    return _json(_metadata(m, slot, None))


@router.get(
    "/models/{name}/versions/{version}",
    summary="Model version metadata",
    response_model=ModelMetadata,
    responses=_errors(401, 403, 404, 429, 503),
)
@_oip_errors
async def model_version_metadata(name: str, version: str, request: Request) -> Response:
    """The metadata of one loaded version (role: viewer)."""
    require(request, "viewer")
    m, slot = _slot(_server(request), name, version)
    return _json(_metadata(m, slot, version))


_INFER = {
    "response_model": None,
    "responses": {200: {"model": InferenceResponse}, **_errors(400, 401, 403, 404, 413, 429, 503)},
    "openapi_extra": {"requestBody": {"required": True, "content": {"application/json": {"schema": InferenceRequest.model_json_schema()}}}},
}


@router.post("/models/{name}/infer", summary="Inference", **_INFER)  # type: ignore[arg-type]
@_oip_errors
async def infer(name: str, request: Request) -> Response:
    """Tensors in, tensors out, through the native predict path (role: operator)."""
    return await _infer(request, name, None)


@router.post("/models/{name}/versions/{version}/infer", summary="Inference on one version", **_INFER)  # type: ignore[arg-type]
@_oip_errors
async def infer_version(name: str, version: str, request: Request) -> Response:
    """Inference on that loaded version, whatever the rollout routes (role: operator)."""
    return await _infer(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    require(request, "operator")
    server = _server(request)
    with server.expect(name):
        body, binary = await _read(request)
        tensors = decode_inputs(body, binary)
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise tensor_errors([{"field": "parameters", "message": "must be an object", "type": "type_error"}])
        wanted = _requested_outputs(body, params)
        m, slot = _slot(server, name, version)
        sticky = (m.sticky_key,) if m.sticky_key else ()
        rows = rows_from_tensors(slot.runtime.schema, tensors, features_optional=bool(m.spec.entity_keys), extra=sticky)
        _check_outputs(wanted, _task(slot))  # before the model runs: a refused request costs no prediction
        key = params.get("key") or request.headers.get("x-steward-key")
        rid = request.scope.get("state", {}).get("request_id")
        try:
            result = await server.predict(name, rows, key=None if key is None else str(key), request_id=rid, version=version)
        except ValidationFailed as exc:
            raise rename_row_errors(exc) from None
    # the slot that answered names the outputs (a canary's challenger may have; a swap since then keeps the routed one)
    answered = next((x for x in (m.champion, m.challenger) if x is not None and x.version == result.version), slot)
    task = _task(answered)
    tensors_out = encode_outputs(task, result.predictions)
    names = list(tensors_out) if not wanted else list(wanted)
    all_binary = bool(params.get("binary_data_output", False))
    _check_outputs({n: False for n in names if n not in tensors_out}, task, list(tensors_out))
    out: dict[str, Any] = {
        "model_name": name,
        "model_version": result.version,
        "parameters": {"request_id": result.request_id, "variant": result.variant, "latency_ms": round(result.latency_ms, 3)},
        "outputs": [],
    }
    if isinstance(body.get("id"), str):
        out["id"] = body["id"]
    tails: list[bytes] = []
    for n in names:
        tensor = tensors_out[n]
        if wanted.get(n, False) if wanted else all_binary:
            tensor, raw = to_binary(tensor)
            tails.append(raw)
        out["outputs"].append(tensor)
    head = orjson.dumps(out)
    if not tails:
        return Response(head, media_type="application/json")
    return Response(
        head + b"".join(tails), media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(len(head))}
    )


def _check_outputs(wanted: dict[str, bool], task: str, known: list[str] | None = None) -> None:
    """Refuse outputs the model does not return (400 naming each)."""
    known = known if known is not None else output_names(task)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        message = f"not an output of this model (outputs: {', '.join(known)})"
        raise tensor_errors([{"field": f"outputs.{n}", "message": message, "type": "value_error"} for n in unknown])


def _requested_outputs(body: dict[str, Any], params: dict[str, Any]) -> dict[str, bool]:
    """Output name → binary? for the outputs asked for (empty: all, JSON unless ``binary_data_output``)."""
    requested = body.get("outputs")
    if requested is None:
        return {}
    if not isinstance(requested, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested):
        raise tensor_errors([{"field": "outputs", "message": "must be a list of {'name': ...}", "type": "type_error"}])
    default = bool(params.get("binary_data_output", False))
    return {o["name"]: bool((o.get("parameters") or {}).get("binary_data", default)) for o in requested}
