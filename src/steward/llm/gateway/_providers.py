"""Upstream providers: any OpenAI-compatible endpoint, the Anthropic Messages API, and a local offline one.

Every provider speaks the OpenAI chat-completions shapes to the rest of the
gateway (request dicts in, response dicts / chunk dicts out), so the router,
cache and budgets never care which provider answered. One module per provider
family (``_openai``, ``_anthropic``, ``_local``) over shared transports (``_http``);
this module holds what the router sees: the :class:`Provider` protocol and
:func:`build_provider`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from typing import Any, Protocol

from steward.errors import SpecError
from steward.llm.gateway._anthropic import AnthropicProvider, from_anthropic, to_anthropic
from steward.llm.gateway._local import NO_ANSWER, EmbedFn, LocalProvider, extractive_answer, fill_schema
from steward.llm.gateway._openai import OpenAIProvider
from steward.llm.gateway._shapes import response_to_chunks

__all__ = [
    "NO_ANSWER",
    "AnthropicProvider",
    "EmbedFn",
    "LocalProvider",
    "OpenAIProvider",
    "Provider",
    "build_provider",
    "extractive_answer",
    "fill_schema",
    "from_anthropic",
    "response_to_chunks",
    "to_anthropic",
]

logger = logging.getLogger(__name__)


class Provider(Protocol):
    """What the router needs from a provider (OpenAI shapes in and out)."""

    name: str
    kind: str
    max_retries: int

    async def chat(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """One non-streamed chat completion."""
        ...

    def stream(self, body: dict[str, Any], model: str) -> AsyncIterator[dict[str, Any]]:
        """A streamed chat completion, as OpenAI chunk dicts."""
        ...

    async def embed(self, inputs: list[str], model: str) -> dict[str, Any]:
        """An OpenAI embeddings response."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def build_provider(name: str, kind: str, *, base_url: str | None, api_key_env: str | None, timeout_s: float, max_retries: int) -> Provider:
    """A provider from its spec entry; the API key is read from the named environment variable."""
    api_key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not api_key:
        logger.warning("provider %s: environment variable %s is not set", name, api_key_env)
    if kind == "local":
        return LocalProvider(name, max_retries=max_retries)
    if kind == "anthropic":
        return AnthropicProvider(name, base_url, api_key=api_key, timeout_s=timeout_s, max_retries=max_retries)
    if not base_url:
        raise SpecError(f"llm.gateway.providers.{name}: an openai provider needs base_url", hint="e.g. base_url: http://127.0.0.1:8000/v1")
    return OpenAIProvider(name, base_url, api_key=api_key, timeout_s=timeout_s, max_retries=max_retries)
