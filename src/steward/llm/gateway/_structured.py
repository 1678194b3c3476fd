"""Structured outputs: enforce a request's JSON schema on the answer, with one repair attempt."""

from __future__ import annotations

import logging
from typing import Any

import orjson

__all__ = ["json_schema_of", "repair_messages", "validate_output"]

logger = logging.getLogger(__name__)


def json_schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of ``response_format: {type: json_schema, json_schema: {schema: ...}}``, if any."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = (fmt.get("json_schema") or {}).get("schema")
    return schema if isinstance(schema, dict) else {}


def validate_output(content: str | None, schema: dict[str, Any]) -> list[str]:
    """Errors of ``content`` against ``schema`` (empty when valid)."""
    import jsonschema  # type: ignore[import-untyped,unused-ignore]

    if content is None:
        return ["the answer has no content"]
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        return [f"not valid JSON: {exc}"]
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in validator.iter_errors(value)][:10]


def repair_messages(messages: list[dict[str, Any]], bad: str | None, errors: list[str]) -> list[dict[str, Any]]:
    """The conversation plus the invalid answer and a request to fix it."""
    return [
        *messages,
        {"role": "assistant", "content": bad or ""},
        {
            "role": "user",
            "content": "Your previous answer does not match the required JSON schema: "
            + "; ".join(errors)
            + ". Reply again with only a JSON value that matches the schema.",
        },
    ]
