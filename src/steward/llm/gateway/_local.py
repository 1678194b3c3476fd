"""The offline, deterministic ``local`` provider: extractive answers from the messages, scriptable for tests."""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from steward.llm.embeddings import get_embedder
from steward.llm.gateway._shapes import message_text, response_to_chunks
from steward.llm.gateway._tokens import count_messages, count_text

__all__ = ["NO_ANSWER", "EmbedFn", "LocalProvider", "extractive_answer", "fill_schema"]

EmbedFn = Callable[[list[str]], Any]

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_TERM = re.compile(r"[a-z0-9]+")
_STOPWORD_TEXT = (
    "a an the is are was were be been of to in on at for by with and or not no it its this that "
    "these those what which who whom how why when where do does did can could should would will i you he she we they me "
    "my your our their as from than then there here about into over under if so but any all some"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
NO_ANSWER = "I could not find an answer in the provided context."


def _terms(text: str) -> set[str]:
    return {t for t in _TERM.findall(text.lower()) if t not in _STOPWORDS}


def extractive_answer(messages: list[dict[str, Any]], *, max_sentences: int = 2) -> str:
    """Answer from the messages' own context: the sentences that best overlap the question.

    The question is the last user message's last sentence with a ``?`` (or the
    whole message); the context is every system/user/tool message plus the rest
    of the last user message. Sentences are scored by shared terms (stopwords
    dropped), normalised by sentence length, and returned in their original order.
    """
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        return NO_ANSWER
    last = users[-1]
    last_sents = [s.strip() for s in _SENTENCE.split(message_text(messages[last].get("content"))) if s.strip()]
    qs = [s for s in last_sents if "?" in s]
    question = qs[-1] if qs else " ".join(last_sents)
    context: list[str] = []
    for i, m in enumerate(messages):
        if m.get("role") in ("system", "developer", "user", "tool") and i != last:
            context += [s.strip() for s in _SENTENCE.split(message_text(m.get("content"))) if s.strip()]
    context += [s for s in last_sents if s != question]
    q = _terms(question)
    scored = []
    for pos, sent in enumerate(context):
        terms = _terms(sent)
        overlap = len(q & terms)
        if overlap:
            scored.append((overlap / math.sqrt(len(terms)), pos, sent))
    if not scored:
        return NO_ANSWER
    best = sorted(scored, key=lambda x: (-x[0], x[1]))[:max_sentences]
    return " ".join(s for _, _, s in sorted(best, key=lambda x: x[1]))


def fill_schema(schema: dict[str, Any], text: str) -> Any:
    """A deterministic value that satisfies a (simple) JSON schema, strings filled with ``text``."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return fill_schema(schema[key][0], text)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: fill_schema(v, text) for k, v in props.items()}
    if kind == "array":
        return [fill_schema(schema.get("items", {}), text) for _ in range(int(schema.get("minItems", 0)))]
    if kind in ("integer", "number"):
        value = schema.get("minimum", 0)
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return text


class LocalProvider:
    """An offline, deterministic provider: extractive answers from the messages, scriptable for tests.

    Without a script it answers with :func:`extractive_answer`; with
    ``response_format`` it returns JSON filled from the schema; when ``tool_choice``
    names a function (or is ``required``) it calls that tool with arguments filled
    from its parameter schema. :meth:`script` queues exact answers (strings,
    message dicts, or exceptions to raise) consumed one per call.

    Args:
        name: Provider name.
        embed_fn: Embedding function for :meth:`embed` (default: :mod:`steward.llm.embeddings`; the model loads on first use).
        latency_s: Optional artificial latency per call.
    """

    kind = "local"

    def __init__(self, name: str = "local", *, embed_fn: EmbedFn | None = None, latency_s: float = 0.0, max_retries: int = 0) -> None:
        self.name = name
        self.max_retries = max_retries
        self.latency_s = latency_s
        self.calls = 0
        self._script: deque[Any] = deque()
        self._embed_fn = embed_fn

    def script(self, *answers: Any) -> None:
        """Queue answers: a string (content), a dict (``content`` / ``tool_calls``), or an exception to raise."""
        self._script.extend(answers)

    def _message(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self._script:
            item = self._script.popleft()
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, str):
                return {"role": "assistant", "content": item}
            return {
                "role": "assistant",
                "content": item.get("content"),
                **({"tool_calls": item["tool_calls"]} if item.get("tool_calls") else {}),
            }
        messages = body.get("messages", [])
        answer = extractive_answer(messages)
        tools = body.get("tools") or []
        choice = body.get("tool_choice")
        called_tool = any(m.get("role") == "tool" for m in messages)
        if tools and choice != "none" and not called_tool and (choice == "required" or isinstance(choice, dict)):
            name = choice["function"]["name"] if isinstance(choice, dict) else tools[0]["function"]["name"]
            fn = next((t["function"] for t in tools if t["function"]["name"] == name), tools[0]["function"])
            args = fill_schema(fn.get("parameters") or {"type": "object"}, _question(messages))
            call = {
                "id": f"call_{self.calls:06d}",
                "type": "function",
                "function": {"name": fn["name"], "arguments": orjson.dumps(args).decode()},
            }
            return {"role": "assistant", "content": None, "tool_calls": [call]}
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema") or {}
            return {"role": "assistant", "content": orjson.dumps(fill_schema(schema, answer)).decode()}
        if fmt.get("type") == "json_object":
            return {"role": "assistant", "content": orjson.dumps({"answer": answer}).decode()}
        return {"role": "assistant", "content": answer}

    async def _wait(self) -> None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)

    async def chat(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """Answer one request."""
        await self._wait()
        message = self._message(body)
        pin = count_messages(body.get("messages", []), body.get("tools"))
        pout = count_text(message.get("content") or "") + (
            count_text(orjson.dumps(message["tool_calls"]).decode()) if message.get("tool_calls") else 0
        )
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"{self.name}:{model}",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}],
            "usage": {"prompt_tokens": pin, "completion_tokens": pout, "total_tokens": pin + pout},
        }

    async def stream(self, body: dict[str, Any], model: str) -> AsyncIterator[dict[str, Any]]:
        """Answer one request as chunks (word by word)."""
        response = await self.chat(body, model)
        for chunk in response_to_chunks(response):
            yield chunk

    async def embed(self, inputs: list[str], model: str) -> dict[str, Any]:
        """Embed with the injected function or the offline MiniLM embedder."""
        fn = self._embed_fn
        if fn is None:
            fn = get_embedder().embed
        vectors = fn(inputs)
        tokens = sum(count_text(t) for t in inputs)
        return {
            "object": "list",
            "model": f"{self.name}:{model}",
            "data": [{"object": "embedding", "index": i, "embedding": [float(x) for x in v]} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def aclose(self) -> None:
        """Nothing to release."""


def _question(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return message_text(m.get("content"))
    return ""
