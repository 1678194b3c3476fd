"""OpenAI chat shapes shared by every provider: message text and the chunks of a streamed answer."""

from __future__ import annotations

import re
import time
from typing import Any

__all__ = ["chunk_frame", "message_text", "response_to_chunks"]


def message_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def chunk_frame(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a streamed answer, with one choice carrying ``delta``."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def response_to_chunks(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A complete chat completion as the chunks a streaming provider would send (content word by word, then usage)."""
    cid, created, model = response.get("id", ""), response.get("created", int(time.time())), response.get("model", "")
    choice = response["choices"][0]
    message = choice.get("message", {})

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return chunk_frame(cid, created, model, delta, finish)

    out = [chunk({"role": "assistant", "content": ""})]
    content = message.get("content") or ""
    for piece in re.findall(r"\S+\s*|\s+", content):
        out.append(chunk({"content": piece}))
    for i, call in enumerate(message.get("tool_calls") or []):
        out.append(chunk({"tool_calls": [{"index": i, "id": call.get("id"), "type": "function", "function": call.get("function", {})}]}))
    out.append(chunk({}, choice.get("finish_reason") or "stop"))
    if response.get("usage"):
        out.append(
            {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": response["usage"]}
        )
    return out
