"""OpenAI's embeddings options the gateway applies itself: ``dimensions`` and ``encoding_format``.

Every provider returns float vectors at the model's native width; the gateway shortens them (``dimensions``:
truncate, then L2 re-normalise, as OpenAI's text-embedding-3 models do) and encodes them (``base64``: the
little-endian float32 bytes, exactly what OpenAI sends and its clients decode). Doing it here keeps one
behaviour whichever provider answered, including the local ones that know no such options.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

from steward.errors import ValidationFailed

__all__ = ["EmbeddingOptions", "embedding_options", "shape_embeddings"]

ENCODINGS = ("float", "base64")

EmbeddingOptions = tuple[str, int | None]


def _invalid(param: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"'{param}' {message}", details={"errors": [{"field": param, "message": message}]})


def embedding_options(body: dict[str, Any]) -> EmbeddingOptions:
    """``(encoding_format, dimensions)`` of a request, validated (400 naming the parameter otherwise)."""
    fmt = body.get("encoding_format")
    fmt = "float" if fmt is None else fmt
    if fmt not in ENCODINGS:
        raise _invalid("encoding_format", f"must be one of {', '.join(ENCODINGS)}")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise _invalid("dimensions", "must be a positive integer")
    return fmt, dims


def _shorten(vector: list[float], dims: int) -> list[float]:
    head = [float(x) for x in vector[:dims]]
    norm = math.sqrt(sum(x * x for x in head))
    return [x / norm for x in head] if norm > 0 else head


def shape_embeddings(result: dict[str, Any], options: EmbeddingOptions) -> dict[str, Any]:
    """``result`` (float vectors) with ``dimensions`` and ``encoding_format`` applied.

    Raises:
        ValidationFailed: ``dimensions`` exceeds the model's native width (nothing to truncate to).
    """
    fmt, dims = options
    if fmt == "float" and dims is None:
        return result
    data = []
    for item in result.get("data") or []:
        vector = list(item["embedding"])
        if dims is not None:
            if dims > len(vector):
                raise _invalid("dimensions", f"must be at most {len(vector)} for model {result.get('model')!r}")
            vector = _shorten(vector, dims)
        encoded: list[float] | str = vector
        if fmt == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        data.append({**item, "embedding": encoded})
    return {**result, "data": data}
