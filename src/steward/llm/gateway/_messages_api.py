"""Anthropic's Messages API over the gateway: requests in, answers and stream events out.

The gateway's core speaks OpenAI chat completions (routing, budgets, guardrails, cache and traces
all work on that shape). ``POST /v1/messages`` translates an Anthropic request into that shape
(:func:`chat_body`), hands it to :meth:`Gateway.chat`, and translates the answer back: a complete
response with :func:`to_message`, a stream with :func:`message_events` (Anthropic's
``message_start`` ... ``message_stop`` event sequence built from the OpenAI chunk stream).

Supported: ``system`` (a string or text blocks), ``messages`` whose content is a string or text
blocks, ``max_tokens`` (required, as Anthropic requires it), ``temperature``, ``top_p``,
``stop_sequences``, ``stream``, ``metadata`` (ignored). Anything else that changes the answer
(tools, images, documents) is refused with a 400 naming the field rather than silently dropped.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from steward.errors import ValidationFailed

__all__ = ["chat_body", "message_events", "to_message"]

logger = logging.getLogger(__name__)

# OpenAI finish_reason -> Anthropic stop_reason ("stop" is refined to stop_sequence when a stop sequence ended the text)
_STOP_REASON = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
# request fields passed through or translated; the rest are refused (see the module docstring)
_IGNORED = frozenset({"metadata", "top_k", "service_tier"})


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", details={"errors": [{"field": field, "message": message}]})


def _text(content: Any, field: str) -> str:
    """The text of an Anthropic content value: a string, or a list of ``{"type": "text", "text"}`` blocks."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(field, "must be a string or a list of content blocks")
    parts: list[str] = []
    for i, block in enumerate(content):
        where = f"{field}[{i}]"
        if not isinstance(block, dict):
            raise _invalid(where, "must be a content block object")
        if block.get("type") != "text":
            raise _invalid(f"{where}.type", f"content block type {block.get('type')!r} is not supported (only 'text')")
        if not isinstance(block.get("text"), str):
            raise _invalid(f"{where}.text", "must be a string")
        parts.append(block["text"])
    return "".join(parts)


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages request as the gateway's OpenAI chat-completions body.

    Raises:
        ValidationFailed: a missing or malformed field, or an unsupported feature (the field is named).
    """
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "required (a gateway alias)")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _invalid("max_tokens", "required, a positive integer")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _invalid("messages", "required, a non-empty list")
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        messages.append({"role": "system", "content": _text(system, "system")})
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise _invalid(f"messages[{i}]", "must be an object")
        role = m.get("role")
        if role not in ("user", "assistant"):
            raise _invalid(f"messages[{i}].role", "must be 'user' or 'assistant'")
        messages.append({"role": role, "content": _text(m.get("content"), f"messages[{i}].content")})
    out: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            if not isinstance(body[name], int | float) or isinstance(body[name], bool):
                raise _invalid(name, "must be a number")
            out[name] = body[name]
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _invalid("stop_sequences", "must be a list of strings")
        if stops:
            out["stop"] = stops
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # message_delta carries the usage
    known = {"model", "max_tokens", "messages", "system", "temperature", "top_p", "stop_sequences", "stream"}
    for name in body:
        if name not in known and name not in _IGNORED:
            raise _invalid(name, "is not supported by the gateway's Messages API")
    return out


def _stop(finish: str | None, text: str, stops: list[str]) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) of an OpenAI finish reason.

    OpenAI says "stop" both for a natural end and a stop sequence, and usually drops the sequence from the text,
    so the two cannot always be told apart: end_turn unless the text ends with one of the sequences (a provider
    that keeps it, like the local one).
    """
    reason = _STOP_REASON.get(finish or "stop", "end_turn")
    if reason == "end_turn":
        for s in stops:
            if s and text.endswith(s):
                return "stop_sequence", s
    return reason, None


def _usage(usage: dict[str, Any] | None) -> dict[str, int]:
    u = usage or {}
    return {"input_tokens": int(u.get("prompt_tokens") or 0), "output_tokens": int(u.get("completion_tokens") or 0)}


def _message_id(openai_id: Any) -> str:
    return f"msg_{openai_id}" if isinstance(openai_id, str) and openai_id else f"msg_{uuid.uuid4().hex}"


def to_message(response: dict[str, Any], model: str, stops: list[str] | None = None) -> dict[str, Any]:
    """An OpenAI chat completion as an Anthropic Messages response."""
    choice = (response.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    text: str = message["content"] if isinstance(message.get("content"), str) else ""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text or not message.get("tool_calls") else []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            args = {"_raw": fn.get("arguments")}
        content.append({"type": "tool_use", "id": call.get("id") or f"toolu_{uuid.uuid4().hex}", "name": fn.get("name"), "input": args})
    reason, sequence = _stop(choice.get("finish_reason"), text, stops or [])
    return {
        "id": _message_id(response.get("id")),
        "type": "message",
        "role": "assistant",
        "model": response.get("model") or model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": _usage(response.get("usage")),
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


async def _chunks(stream: AsyncIterator[bytes]) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON payloads of an OpenAI server-sent-event byte stream (``[DONE]`` ends it)."""
    buffer = b""
    async for piece in stream:
        buffer += piece
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            for line in frame.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                yield orjson.loads(data)


async def message_events(stream: AsyncIterator[bytes], model: str, stops: list[str] | None = None) -> AsyncIterator[bytes]:
    """The gateway's OpenAI chunk stream as Anthropic's Messages stream events.

    ``message_start``, one text ``content_block_start``, a ``content_block_delta`` (``text_delta``) per
    chunk with text, ``content_block_stop``, ``message_delta`` (stop reason and usage), ``message_stop``.
    A provider failing mid-stream (tokens already sent) ends it with Anthropic's ``error`` event.
    """
    started = False
    text: list[str] = []
    finish: str | None = None
    usage: dict[str, Any] | None = None
    source = _chunks(stream)
    try:
        async for chunk in source:
            if "error" in chunk:
                err = chunk["error"] if isinstance(chunk["error"], dict) else {}
                yield _event("error", {"error": {"type": "api_error", "message": str(err.get("message") or "upstream error")}})
                return
            if not started:
                started = True
                message: dict[str, Any] = {
                    "id": _message_id(chunk.get("id")),
                    "type": "message",
                    "role": "assistant",
                    "model": chunk.get("model") or model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 0, "output_tokens": 0},  # known once the stream ends: see message_delta
                }
                yield _event("message_start", {"message": message})
                yield _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    text.append(piece)
                    yield _event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
                finish = choice.get("finish_reason") or finish
    finally:
        await source.aclose()
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()  # runs the gateway's accounting (usage, cache, span) now, even if the client went away
    if not started:
        yield _event("error", {"error": {"type": "api_error", "message": "the upstream stream ended before any answer"}})
        return
    reason, sequence = _stop(finish, "".join(text), stops or [])
    yield _event("content_block_stop", {"index": 0})
    yield _event("message_delta", {"delta": {"stop_reason": reason, "stop_sequence": sequence}, "usage": _usage(usage)})
    yield _event("message_stop", {})
