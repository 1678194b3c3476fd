"""Streamed answers: relaying a provider's stream (accounting for it once it ends) and replaying a complete answer."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from steward.llm.gateway._errors import ProviderError
from steward.llm.gateway._request import Req, sse
from steward.llm.gateway._shapes import response_to_chunks

if TYPE_CHECKING:
    from steward.llm.gateway._gateway import Gateway
    from steward.spec import GuardrailsSpec

__all__ = ["relay", "replay"]

logger = logging.getLogger(__name__)


async def replay(response: dict[str, Any], include_usage: bool) -> AsyncIterator[bytes]:
    """A complete (cached or validated) answer as the server-sent events of a stream."""
    for chunk in response_to_chunks(response):
        if chunk.get("usage") is not None and not chunk.get("choices"):
            if include_usage:
                yield sse(chunk)
            continue
        yield sse(chunk)
    yield b"data: [DONE]\n\n"


async def relay(
    gw: Gateway,
    req: Req,
    head: list[dict[str, Any]],
    rest: AsyncIterator[dict[str, Any]],
    include_usage: bool,
    ckey: str | None,
    vector: Any,
    body: dict[str, Any],
    gspec: GuardrailsSpec | None = None,
) -> AsyncIterator[bytes]:
    """Pass the upstream stream through, accumulating the answer for usage, cache, trace and the output guard."""
    parts: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish: str | None = None
    usage: dict[str, Any] | None = None
    meta: dict[str, Any] = {}
    status, error = "ok", None

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        for c in head:
            yield c
        async for c in rest:
            yield c

    try:
        async for chunk in chunks():
            if not meta:
                meta = {"id": chunk.get("id"), "created": chunk.get("created"), "model": chunk.get("model")}
            if chunk.get("usage"):
                usage = chunk["usage"]
                if not chunk.get("choices"):
                    if include_usage:
                        yield sse(chunk)
                    continue
                if not include_usage:
                    chunk = {k: v for k, v in chunk.items() if k != "usage"}
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    parts.append(delta["content"])
                for tc in delta.get("tool_calls") or []:
                    slot = calls.setdefault(
                        int(tc.get("index", 0)), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                    )
                    slot["id"] = tc.get("id") or slot["id"]
                    fn = tc.get("function") or {}
                    slot["function"]["name"] += fn.get("name") or ""
                    slot["function"]["arguments"] += fn.get("arguments") or ""
                finish = choice.get("finish_reason") or finish
            yield sse(chunk)
        yield b"data: [DONE]\n\n"
    except ProviderError as exc:
        # Tokens were already sent: no fallback possible, end the stream with an error event.
        status, error = "error", exc
        yield sse({"error": {"message": exc.message, "type": "provider_error", "code": exc.code}})
    finally:
        close = getattr(rest, "aclose", None)
        if close is not None:
            try:
                await close()  # the client may have gone: release the upstream connection now
            except Exception:
                logger.debug("error closing the upstream stream", exc_info=True)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(parts) if parts or not calls else None}
        if calls:
            message["tool_calls"] = [calls[i] for i in sorted(calls)]
        response = {
            "id": meta.get("id") or f"chatcmpl-{req.request_id}",
            "object": "chat.completion",
            "created": meta.get("created") or int(time.time()),
            "model": meta.get("model") or "",
            "choices": [{"index": 0, "message": message, "finish_reason": finish or "stop"}],
        }
        if usage:
            response["usage"] = usage
        assert req.target is not None
        gw._add_usage(req, req.target, response, body)
        cacheable = True
        if gspec is not None and status == "ok" and isinstance(message.get("content"), str):
            try:
                message["content"], found, cacheable = gw.guards.scan_output(gspec, message["content"])
                req.verdicts.extend(found)
            except Exception:  # the stream is over; a guard failure must not lose the usage record
                logger.exception("output guard failed on streamed request %s", req.request_id)
                cacheable = False
        if status == "ok" and finish is not None and req.cache != "off" and cacheable:
            response.setdefault(
                "usage",
                {
                    "prompt_tokens": req.prompt_tokens,
                    "completion_tokens": req.completion_tokens,
                    "total_tokens": req.prompt_tokens + req.completion_tokens,
                },
            )
            gw._store(req, ckey, vector, response)
        gw._finish(req, status if finish is not None or status == "error" else "aborted", error)
