"""The Anthropic Messages API, translated to and from the OpenAI chat shapes (text, tools, streams), over httpx."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

from steward.llm.gateway._errors import ProviderError, UpstreamRejected
from steward.llm.gateway._http import httpx_client, status_error, transport_error
from steward.llm.gateway._shapes import chunk_frame, message_text

__all__ = ["AnthropicProvider", "from_anthropic", "to_anthropic"]

_STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls", "refusal": "content_filter"}


def to_anthropic(body: dict[str, Any], model: str) -> dict[str, Any]:
    """Translate an OpenAI chat request into an Anthropic Messages request."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        # Anthropic wants alternating roles: merge consecutive same-role turns.
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for m in body.get("messages", []):
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(message_text(m.get("content")))
        elif role == "user":
            add("user", [{"type": "text", "text": message_text(m.get("content"))}])
        elif role == "assistant":
            blocks: list[dict[str, Any]] = []
            if message_text(m.get("content")):
                blocks.append({"type": "text", "text": message_text(m.get("content"))})
            for call in m.get("tool_calls") or []:
                fn = call.get("function", {})
                try:
                    args = orjson.loads(fn.get("arguments") or "{}")
                except orjson.JSONDecodeError:
                    args = {}
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": args})
            add("assistant", blocks)
        elif role == "tool":
            add("user", [{"type": "tool_result", "tool_use_id": m.get("tool_call_id"), "content": message_text(m.get("content"))}])
    out: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": int(body.get("max_tokens") or body.get("max_completion_tokens") or 1024),
    }
    if system:
        out["system"] = "\n\n".join(system)
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = body.get("tools")
    if tools:
        out["tools"] = [
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description", ""),
                "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for t in tools
            if t.get("type") == "function"
        ]
        choice = body.get("tool_choice")
        if choice == "required":
            out["tool_choice"] = {"type": "any"}
        elif choice == "none":
            out["tool_choice"] = {"type": "none"}
        elif isinstance(choice, dict) and choice.get("type") == "function":
            out["tool_choice"] = {"type": "tool", "name": choice["function"]["name"]}
        elif choice == "auto":
            out["tool_choice"] = {"type": "auto"}
    return out


def from_anthropic(data: dict[str, Any], model: str) -> dict[str, Any]:
    """Translate an Anthropic Messages response into an OpenAI chat completion."""
    text = []
    calls = []
    for block in data.get("content", []):
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": orjson.dumps(block.get("input", {})).decode()},
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    usage = data.get("usage") or {}
    pin, pout = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    return {
        "id": data.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": data.get("model") or model,
        "choices": [{"index": 0, "message": message, "finish_reason": _STOP.get(data.get("stop_reason") or "", "stop")}],
        "usage": {"prompt_tokens": pin, "completion_tokens": pout, "total_tokens": pin + pout},
    }


class AnthropicProvider:
    """The Anthropic Messages API, translated to and from OpenAI shapes (text, tools, streams).

    Args:
        name: Provider name from the spec.
        base_url: API root (default ``https://api.anthropic.com/v1``).
        api_key: Sent as ``x-api-key``.
        timeout_s: Per-request timeout.
        max_retries: Retries before falling back.
    """

    kind = "anthropic"
    version = "2023-06-01"

    def __init__(
        self, name: str, base_url: str | None = None, *, api_key: str | None = None, timeout_s: float = 60.0, max_retries: int = 1
    ) -> None:
        self.name = name
        self.max_retries = max_retries
        headers = {"anthropic-version": self.version}
        if api_key:
            headers["x-api-key"] = api_key
        self._client = httpx_client(base_url or "https://api.anthropic.com/v1", timeout_s, headers)

    async def chat(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """One completion through the Messages API."""
        import httpx  # loaded with the client in __init__; imported here only for its exception types

        try:
            resp = await self._client.post("messages", content=orjson.dumps(to_anthropic(body, model)))
        except httpx.HTTPError as exc:
            raise transport_error(self.name, exc) from None
        if resp.status_code >= 400:
            raise status_error(self.name, resp.status_code, resp.headers, resp.content)
        return from_anthropic(orjson.loads(resp.content), model)

    async def stream(self, body: dict[str, Any], model: str) -> AsyncIterator[dict[str, Any]]:
        """A streamed completion: Anthropic events become OpenAI chunks (text and tool-call deltas)."""
        import httpx  # loaded with the client in __init__; imported here only for its exception types

        payload = {**to_anthropic(body, model), "stream": True}
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        tool_index: dict[int, int] = {}
        usage = {"prompt_tokens": 0, "completion_tokens": 0}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return chunk_frame(cid, created, model, delta, finish)

        try:
            async with self._client.stream("POST", "messages", content=orjson.dumps(payload)) as resp:
                if resp.status_code >= 400:
                    raise status_error(self.name, resp.status_code, resp.headers, await resp.aread())
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    ev = orjson.loads(line[5:].strip())
                    kind = ev.get("type")
                    if kind == "message_start":
                        usage["prompt_tokens"] = int(ev.get("message", {}).get("usage", {}).get("input_tokens", 0))
                        yield chunk({"role": "assistant", "content": ""})
                    elif kind == "content_block_start":
                        block = ev.get("content_block", {})
                        if block.get("type") == "tool_use":
                            idx = tool_index.setdefault(ev.get("index", 0), len(tool_index))
                            call = {
                                "index": idx,
                                "id": block.get("id"),
                                "type": "function",
                                "function": {"name": block.get("name"), "arguments": ""},
                            }
                            yield chunk({"tool_calls": [call]})
                    elif kind == "content_block_delta":
                        delta = ev.get("delta", {})
                        if delta.get("type") == "text_delta":
                            yield chunk({"content": delta.get("text", "")})
                        elif delta.get("type") == "input_json_delta":
                            idx = tool_index.get(ev.get("index", 0), 0)
                            yield chunk({"tool_calls": [{"index": idx, "function": {"arguments": delta.get("partial_json", "")}}]})
                    elif kind == "message_delta":
                        usage["completion_tokens"] = int(ev.get("usage", {}).get("output_tokens", 0))
                        stop = ev.get("delta", {}).get("stop_reason")
                        yield chunk({}, _STOP.get(stop or "", "stop"))
                    elif kind == "error":
                        raise ProviderError(f"provider {self.name!r} stream error: {str(ev.get('error'))[:300]}")
                    elif kind == "message_stop":
                        break
            total = usage["prompt_tokens"] + usage["completion_tokens"]
            yield {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": {**usage, "total_tokens": total},
            }
        except httpx.HTTPError as exc:
            raise transport_error(self.name, exc) from None

    async def embed(self, inputs: list[str], model: str) -> dict[str, Any]:
        """Anthropic has no embeddings endpoint."""
        raise UpstreamRejected(
            f"provider {self.name!r} (anthropic) has no embeddings", hint="route embeddings to an openai or local provider"
        )

    async def aclose(self) -> None:
        """Close the pooled client."""
        await self._client.aclose()
