"""Any OpenAI-compatible HTTP endpoint (OpenAI, vLLM, Ollama, LiteLLM, ...), over aiohttp."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from steward.llm.gateway._errors import ProviderError
from steward.llm.gateway._http import AioHTTP

__all__ = ["OpenAIProvider"]


class OpenAIProvider:
    """Any OpenAI-compatible HTTP endpoint (OpenAI, vLLM, Ollama, LiteLLM, ...).

    Args:
        name: Provider name from the spec.
        base_url: Endpoint root, e.g. ``http://127.0.0.1:8001/v1``.
        api_key: Bearer token for the upstream, if any.
        timeout_s: Per-request timeout (also between two streamed chunks).
        max_retries: Retries before falling back.
    """

    kind = "openai"

    def __init__(self, name: str, base_url: str, *, api_key: str | None = None, timeout_s: float = 30.0, max_retries: int = 1) -> None:
        self.name = name
        self.max_retries = max_retries
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = AioHTTP(name, base_url, timeout_s, headers)

    async def chat(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """Forward one chat completion."""
        payload = {**body, "model": model, "stream": False}
        payload.pop("stream_options", None)
        raw = await self._http.post("chat/completions", orjson.dumps(payload))
        try:
            data: dict[str, Any] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProviderError(f"provider {self.name!r} answered invalid JSON") from None
        return data

    async def stream(self, body: dict[str, Any], model: str) -> AsyncIterator[dict[str, Any]]:
        """Forward a streamed chat completion, yielding chunk dicts (usage requested)."""
        payload = {**body, "model": model, "stream": True, "stream_options": {"include_usage": True}}
        lines = self._http.lines("chat/completions", orjson.dumps(payload))
        try:
            async for line in lines:
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                try:
                    chunk = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise ProviderError(f"provider {self.name!r} sent an invalid stream chunk") from None
                if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
                    raise ProviderError(f"provider {self.name!r} stream error: {str(chunk['error'])[:300]}")
                yield chunk
        finally:
            await lines.aclose()  # release the upstream connection now, not at garbage collection

    async def embed(self, inputs: list[str], model: str) -> dict[str, Any]:
        """Forward an embeddings request."""
        raw = await self._http.post("embeddings", orjson.dumps({"model": model, "input": inputs}))
        try:
            data: dict[str, Any] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProviderError(f"provider {self.name!r} answered invalid JSON") from None
        return data

    async def aclose(self) -> None:
        """Close the pooled session."""
        await self._http.aclose()
