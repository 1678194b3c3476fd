"""The OpenAPI document's error half: one ``Problem`` schema and every error status an operation can answer.

Routers declare their own success shapes and, where they know them, the errors specific to them. This module
finishes the document once, so that no operation is missing an error the app's shared machinery can produce:

* authentication (every route except the public probes): 401 without a key, 403 for a role too low, 429 for a
  client locked out after too many wrong keys;
* a request body: 400 (a body that cannot be read), 413 (over the size limit), 422 (fields named in ``errors``);
* parameters: 422; a path parameter: 404 (no such model, run, rollout);
* 409 and 503 where a route reaches the registry, metadata store or a model that is not loaded.

Every error of a native route is ``application/problem+json`` with the :data:`PROBLEM_SCHEMA`. The protocol surfaces
keep their own error shapes and are left as their routers declare them: the OpenAI/Anthropic gateway
(:data:`GATEWAY_PATHS`) and the Open Inference Protocol under ``/v2``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from steward._primitives import PROBLEM_MEDIA_TYPE

__all__ = ["GATEWAY_PATHS", "PROBLEM_SCHEMA", "PUBLIC_PATHS", "complete_errors", "is_protocol_path"]

logger = logging.getLogger(__name__)

# The OpenAI/Anthropic-compatible gateway answers its clients' error shapes, not problem+json.
GATEWAY_PATHS = re.compile(r"^/v1/(chat/completions|embeddings|messages|models(/[^/]+)?)/?$")
# The probes answer without a key.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem: Steward's stable ``code`` says what went wrong, ``hint`` how to fix it.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "description": "A URI naming the problem type (ends with the code)."},
        "title": {"type": "string", "description": "The code again, for RFC 9457 clients."},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "detail": {"type": "string", "description": "What went wrong, for a person."},
        "code": {"type": "string", "description": "Steward's stable error code, e.g. validation.failed."},
        "hint": {"type": "string", "description": "How to fix it, when known."},
        "instance": {"type": "string", "description": "The request path."},
        "errors": {
            "type": "array",
            "description": "Every bad field of a request (422), or what the backend rejected.",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "row": {"type": "integer", "description": "The request row (0-based), for predict rows."},
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    # per-route extras (readiness state, retry_after_s, ...) ride along
    "additionalProperties": True,
}

_REF = {"$ref": "#/components/schemas/Problem"}

_DESCRIPTIONS = {
    400: "The request could not be read (problem+json)",
    401: "Missing or invalid API key",
    403: "The key's role is too low",
    404: "No such resource (model, version, run, rollout)",
    409: "Conflicts with the current state",
    413: "Body over the server's size limit",
    422: "Invalid request: every bad field named in errors",
    429: "Locked out after too many wrong keys (Retry-After)",
    503: "A backend (registry, store, model) is not available yet (Retry-After when known)",
}


def is_protocol_path(path: str) -> bool:
    """True for paths whose errors follow another protocol (the LLM gateway, the Open Inference Protocol)."""
    return bool(GATEWAY_PATHS.match(path)) or path == "/v2" or path.startswith("/v2/")


def _statuses(path: str, method: str, op: dict[str, Any]) -> set[int]:
    out = {503}  # every route past the probes reaches a backend or a model that may not be up yet
    if path not in PUBLIC_PATHS:
        out |= {401, 403, 429}
    if "requestBody" in op or method in ("post", "put", "patch"):
        out |= {400, 413, 422}
    if op.get("parameters"):
        out.add(422)
    if "{" in path:
        out |= {404, 409}
    if path.startswith("/v1/admin") or path.startswith("/v1/agent") or path.startswith("/v1/monitor"):
        out |= {404, 409}
    if path == "/healthz":
        out = set()
    return out


def complete_errors(doc: dict[str, Any]) -> dict[str, Any]:
    """Add the ``Problem`` schema and document every error status of every native operation (in place).

    Args:
        doc: The document FastAPI generated.

    Returns:
        The same document.
    """
    doc.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    schemes = doc["components"].setdefault("securitySchemes", {})
    schemes.setdefault("HTTPBearer", {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"})
    schemes.setdefault("APIKeyHeader", {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "The API key"})
    schemas = doc["components"]["schemas"]
    for path, ops in doc.get("paths", {}).items():
        if is_protocol_path(path):
            continue
        for method, op in ops.items():
            responses: dict[str, Any] = op.setdefault("responses", {})
            for code in _statuses(path, method, op):
                responses.setdefault(str(code), {"description": _DESCRIPTIONS[code]})
            if "401" in responses:
                # every route that checks a key says so (routes_health declares the schemes; keys are checked in handlers)
                op.setdefault("security", [{"HTTPBearer": []}, {"APIKeyHeader": []}])
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    # FastAPI documents its own 422 as application/json HTTPValidationError; Steward answers problem+json
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": _REF}}
    # nothing refers to FastAPI's validation shapes any more
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in schemas and unused not in str(doc.get("paths")):
            del schemas[unused]
    return doc
