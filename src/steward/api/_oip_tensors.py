"""Open Inference Protocol v2 tensors ↔ Steward rows: decode request tensors, encode output tensors.

The protocol sends one tensor per input (here: one per model feature, shape ``[N]`` or ``[N, 1]``),
as JSON ``data`` (row-major, flat or nested) or in the binary tensor extension (raw little-endian
bytes after the JSON header, ``parameters.binary_data_size`` each; BYTES elements are a 4-byte
length and the bytes). Rows are rebuilt from the tensors and then go through exactly the native
predict path (validation, routing, batching, logging, metrics). Every problem is a
:class:`~steward.errors.ValidationFailed` whose ``errors`` name the tensor (``inputs.carrier``).

Outputs are named by what the model predicts, so every task fits the same scheme:

=============  ==========================================  =====================
task           outputs                                      today
=============  ==========================================  =====================
binary         ``probability`` FP64 [N] (positive class),   the served models
               ``label`` INT64 [N] (probability >= 0.5)
multiclass     ``probabilities`` FP64 [N, C], ``label``     next issue
               INT64 [N] (argmax)
regression     ``value`` FP64 [N]                           next issue
=============  ==========================================  =====================
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from steward.errors import ValidationFailed
from steward.serving.runtime import InputSchema

__all__ = [
    "DATATYPES",
    "KIND_DATATYPE",
    "Tensor",
    "decode_inputs",
    "encode_outputs",
    "input_metadata",
    "output_metadata",
    "output_names",
    "rename_row_errors",
    "rows_from_tensors",
    "tensor_errors",
    "to_binary",
]

# OIP datatype → numpy dtype of its binary (little-endian) encoding; BYTES is length-prefixed
DATATYPES: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "BYTES": "",
}
_INTS = frozenset(d for d in DATATYPES if d.startswith(("INT", "UINT")))
_FLOATS = frozenset({"FP16", "FP32", "FP64"})
# the datatype a model metadata advertises per schema kind, and every datatype each kind accepts
KIND_DATATYPE = {"number": "FP64", "integer": "INT64", "string": "BYTES", "boolean": "BOOL"}
_ACCEPTS: dict[str, frozenset[str]] = {
    "number": _INTS | _FLOATS,
    "integer": _INTS,
    "string": frozenset({"BYTES"}),
    "boolean": frozenset({"BOOL"}),
}


@dataclass(frozen=True)
class Tensor:
    """One decoded input tensor: ``values`` flat, row-major, as Python values."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: list[Any]


def _err(field: str, message: str, kind: str = "value_error") -> dict[str, Any]:
    return {"field": field, "message": message, "type": kind}


def tensor_errors(errors: list[dict[str, Any]]) -> ValidationFailed:
    """A bad-request error whose message names every tensor (the OIP body carries the message)."""
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:20])
    more = f" (+{len(errors) - 20} more)" if len(errors) > 20 else ""
    return ValidationFailed(f"invalid inference request: {message}{more}", code="oip.bad_request", details={"errors": errors})


def _flatten(data: Any, out: list[Any]) -> None:
    if isinstance(data, list):
        for item in data:
            _flatten(item, out)
    else:
        out.append(data)


def _json_value_ok(datatype: str, v: Any) -> bool:
    if datatype == "BOOL":
        return isinstance(v, bool)
    if datatype == "BYTES":
        return isinstance(v, str)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    if datatype in _INTS:
        return isinstance(v, int) and (v >= 0 or datatype.startswith("INT"))
    return True


def _binary_values(datatype: str, raw: bytes, where: str, errors: list[dict[str, Any]]) -> list[Any] | None:
    if datatype != "BYTES":
        size = np.dtype(DATATYPES[datatype]).itemsize
        if len(raw) % size:
            errors.append(_err(where, f"{len(raw)} bytes is not a whole number of {datatype} elements"))
            return None
        values: list[Any] = np.frombuffer(raw, dtype=DATATYPES[datatype]).tolist()
        return values
    out: list[Any] = []
    pos = 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            errors.append(_err(where, "truncated BYTES element length"))
            return None
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            errors.append(_err(where, "truncated BYTES element"))
            return None
        out.append(raw[pos : pos + n])
        pos += n
    return out


def decode_inputs(body: Mapping[str, Any], binary: bytes = b"") -> list[Tensor]:
    """The request's ``inputs`` as tensors (JSON ``data`` or binary extension).

    Raises:
        ValidationFailed: every malformed tensor, named (``inputs.NAME``), code ``oip.bad_request``.
    """
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise tensor_errors([_err("inputs", "must be a non-empty list of tensors")])
    errors: list[dict[str, Any]] = []
    out: list[Tensor] = []
    seen: set[str] = set()
    offset = 0
    for i, spec in enumerate(inputs):
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or not name:
            errors.append(_err(f"inputs.{i}", "a tensor needs a 'name'"))
            continue
        where = f"inputs.{name}"
        if name in seen:
            errors.append(_err(where, "sent twice"))
            continue
        seen.add(name)
        datatype, shape, params = spec.get("datatype"), spec.get("shape"), spec.get("parameters") or {}
        if datatype not in DATATYPES:
            errors.append(_err(where, f"unknown datatype {datatype!r} (one of {', '.join(DATATYPES)})", "type_error.datatype"))
            continue
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            errors.append(_err(where, "'shape' must be a list of non-negative integers"))
            continue
        size = math.prod(shape)
        binary_size = params.get("binary_data_size") if isinstance(params, dict) else None
        values: list[Any] | None
        if binary_size is not None:
            if not isinstance(binary_size, int) or binary_size < 0 or offset + binary_size > len(binary):
                errors.append(_err(where, "binary_data_size does not fit the binary part of the request"))
                continue
            values = _binary_values(datatype, binary[offset : offset + binary_size], where, errors)
            offset += binary_size
            if values is None:
                continue
        elif "data" in spec:
            values = []
            _flatten(spec["data"], values)
            bad = next((v for v in values if not _json_value_ok(datatype, v)), None)
            if bad is not None or any(v is None for v in values):
                errors.append(_err(where, f"data holds {bad!r}, not a {datatype} value", "type_error.datatype"))
                continue
        else:
            errors.append(_err(where, "no 'data' and no binary_data_size"))
            continue
        if len(values) != size:
            errors.append(_err(where, f"shape {shape} holds {size} elements but {len(values)} were sent", "value_error.shape"))
            continue
        out.append(Tensor(name, datatype, tuple(shape), values))
    if errors:
        raise tensor_errors(errors)
    return out


def rows_from_tensors(
    schema: InputSchema, tensors: Sequence[Tensor], *, features_optional: bool = False, extra: Collection[str] = ()
) -> list[dict[str, Any]]:
    """One row per element: ``{feature: value}``; NaN becomes a missing value, as a JSON null does natively.

    Args:
        schema: The model's input schema (its fields, plus accepted extras such as entity keys).
        tensors: The decoded request tensors.
        features_optional: Missing feature tensors are allowed (entity-keyed models: the online store fills them).
        extra: Further tensors accepted as row fields (the rollout's sticky key field, which routes and is no input).

    Raises:
        ValidationFailed: an unknown or missing tensor, a datatype the field cannot take, a shape that is not
            ``[N]`` or ``[N, 1]``, or tensors of different lengths; each named.
    """
    kinds = {f.name: f.kind for f in schema.fields}
    errors: list[dict[str, Any]] = []
    by_name = {t.name: t for t in tensors}
    for t in tensors:
        where = f"inputs.{t.name}"
        kind = kinds.get(t.name)
        if kind is None and t.name not in schema.allowed_extra and t.name not in extra:
            errors.append(_err(where, f"not an input of this model (inputs: {', '.join(schema.names)})", "extra_forbidden"))
        elif kind is not None and t.datatype not in _ACCEPTS[kind]:
            want = KIND_DATATYPE[kind]
            errors.append(_err(where, f"datatype {t.datatype} does not match the model input ({want})", "type_error.datatype"))
        if len(t.shape) not in (1, 2) or (len(t.shape) == 2 and t.shape[1] != 1):
            errors.append(_err(where, f"shape {list(t.shape)} must be [N] or [N, 1] (one value per row)", "value_error.shape"))
    if not features_optional:
        errors += [_err(f"inputs.{n}", "input tensor missing", "missing") for n in schema.names if n not in by_name]
    lengths = {t.shape[0] for t in tensors if t.shape}
    if not errors and len(lengths) > 1:
        errors.append(_err("inputs", f"tensors hold different numbers of rows: {sorted(lengths)}", "value_error.shape"))
    if errors:
        raise tensor_errors(errors)
    n = next(iter(lengths), 0)
    if n == 0:
        raise tensor_errors([_err("inputs", "the tensors hold no rows", "value_error.shape")])
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    for t in tensors:
        values = t.values
        if t.datatype == "BYTES":
            try:
                values = [v.decode() if isinstance(v, bytes) else v for v in values]
            except UnicodeDecodeError:
                raise tensor_errors([_err(f"inputs.{t.name}", "BYTES elements must be UTF-8 text")]) from None
        elif t.datatype in _FLOATS:
            values = [None if v != v else v for v in values]  # NaN: missing (v != v only for NaN)
        for row, v in zip(rows, values, strict=True):
            row[t.name] = v
    return rows


def rename_row_errors(exc: ValidationFailed) -> ValidationFailed:
    """The native path's ``rows.3.dep_hour`` errors as tensor errors (``inputs.dep_hour[3]``)."""
    errors = []
    for e in exc.details.get("errors", []):
        field = str(e.get("field", ""))
        parts = field.split(".", 2)
        if len(parts) == 3 and parts[0] == "rows":
            field = f"inputs.{parts[2]}[{parts[1]}]"
        errors.append({**e, "field": field})
    return tensor_errors(errors) if errors else exc


def input_metadata(schema: InputSchema) -> list[dict[str, Any]]:
    """Tensor metadata of every model input: one ``[-1]`` tensor per feature, in model order."""
    return [{"name": f.name, "datatype": KIND_DATATYPE[f.kind], "shape": [-1]} for f in schema.fields]


def output_metadata(task: str, classes: int | None = None) -> list[dict[str, Any]]:
    """Tensor metadata of the outputs of a ``binary``, ``multiclass`` or ``regression`` model."""
    if task == "regression":
        return [{"name": "value", "datatype": "FP64", "shape": [-1]}]
    if task == "multiclass":
        return [
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, classes if classes else -1]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
        ]
    return [{"name": "probability", "datatype": "FP64", "shape": [-1]}, {"name": "label", "datatype": "INT64", "shape": [-1]}]


def output_names(task: str) -> list[str]:
    """The output tensor names of a task, in response order."""
    return [o["name"] for o in output_metadata(task)]


def encode_outputs(task: str, predictions: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Every output tensor of one answer, by name (JSON ``data``, row-major)."""
    n = len(predictions)
    if n and isinstance(predictions[0], list | tuple):  # per-class scores: a multiclass answer
        width = len(predictions[0])
        flat = [float(p) for row in predictions for p in row]
        labels = [int(np.argmax(row)) for row in predictions]
        return {
            "probabilities": {"name": "probabilities", "datatype": "FP64", "shape": [n, width], "data": flat},
            "label": {"name": "label", "datatype": "INT64", "shape": [n], "data": labels},
        }
    values = [float(p) for p in predictions]
    if task == "multiclass":  # a model that answers with class indices only (no per-class scores)
        return {"label": {"name": "label", "datatype": "INT64", "shape": [n], "data": [int(p) for p in values]}}
    if task == "regression":
        return {"value": {"name": "value", "datatype": "FP64", "shape": [n], "data": values}}
    return {
        "probability": {"name": "probability", "datatype": "FP64", "shape": [n], "data": values},
        "label": {"name": "label", "datatype": "INT64", "shape": [n], "data": [int(p >= 0.5) for p in values]},
    }


def to_binary(tensor: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """A JSON output tensor in the binary extension: the header (``binary_data_size``, no ``data``) and its bytes."""
    raw = np.asarray(tensor["data"], dtype=DATATYPES[tensor["datatype"]]).tobytes()
    head = {k: v for k, v in tensor.items() if k != "data"}
    head["parameters"] = {**head.get("parameters", {}), "binary_data_size": len(raw)}
    return head, raw
