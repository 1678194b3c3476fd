"""Upstream providers: any OpenAI-compatible endpoint, the Anthropic Messages API, and a local offline one.

Every provider speaks the OpenAI chat-completions shapes to the rest of the
gateway (request dicts in, response dicts / chunk dicts out), so the router,
cache and budgets never care which provider answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import aiohttp
import httpx
import orjson
from yarl import URL

from steward.errors import SpecError
from steward.llm.embeddings import get_embedder
from steward.llm.gateway._errors import ProviderError, UpstreamRejected
from steward.llm.gateway._tokens import count_messages, count_text

__all__ = ["AnthropicProvider", "EmbedFn", "LocalProvider", "OpenAIProvider", "Provider"]

logger = logging.getLogger(__name__)

EmbedFn = Callable[[list[str]], Any]

_JSON = {"content-type": "application/json"}


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


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _status_error(name: str, status: int, headers: Mapping[str, str], body: bytes) -> StewardError_:
    text = body[:300].decode("utf-8", "replace")
    if status in (408, 409, 429) or status >= 500:
        return ProviderError(
            f"provider {name!r} answered {status}: {text}",
            status=status,
            retryable=True,
            retry_after=_retry_after(headers),
            code="llm.provider_rate_limited" if status == 429 else "llm.provider",
        )
    return UpstreamRejected(f"provider {name!r} rejected the request ({status}): {text}", details={"upstream_status": status})


StewardError_ = ProviderError | UpstreamRejected


def _pool_exhausted(name: str) -> ProviderError:
    # Our own connection pool is full: the gateway is overloaded, the provider is not at fault.
    return ProviderError(f"no free connection to provider {name!r} (gateway overloaded)", code="llm.pool_exhausted")


def _transport_error(name: str, exc: Exception) -> ProviderError:
    if isinstance(exc, httpx.PoolTimeout):
        return _pool_exhausted(name)
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(f"provider {name!r} timed out ({type(exc).__name__})", code="llm.provider_timeout")
    return ProviderError(f"provider {name!r} unreachable: {type(exc).__name__}: {exc}", code="llm.provider_unreachable")


def _client(base_url: str, timeout_s: float, headers: dict[str, str]) -> httpx.AsyncClient:
    # One pooled client per provider, reused by every request (keep-alive).
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        timeout=httpx.Timeout(timeout_s),
        # A bounded pool: httpcore scans its connections on every request, so a huge pool costs CPU under load.
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30.0),
        headers={**_JSON, **headers},
    )


class _AioHTTP:
    """One aiohttp session per provider: created lazily inside the running event loop, keep-alive, sized for concurrency.

    aiohttp costs about a third of httpx's CPU per request and its pool does not slow down as in-flight
    connections grow, which is what the gateway's added latency is made of under load.

    Timeouts mirror ``httpx.Timeout(timeout_s)``: connecting (including waiting for a pooled connection)
    and every read (so also the gap between two streamed chunks) are each bounded by ``timeout_s``.

    Args:
        name: Provider name (for error messages).
        base_url: Endpoint root.
        timeout_s: Connect / read timeout.
        headers: Sent with every request (JSON content type added).
        limit: Most connections open at once.
    """

    def __init__(self, name: str, base_url: str, timeout_s: float, headers: dict[str, str], *, limit: int = 512) -> None:
        self.name = name
        self.base = base_url.rstrip("/") + "/"
        self.headers = {**_JSON, **headers}
        self.limit = limit
        self.timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s)
        self.inflight = 0
        self._urls: dict[str, URL] = {}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def url(self, path: str) -> URL:
        """The absolute URL of ``path`` (parsed once)."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self.base + path)
        return url

    def session(self) -> aiohttp.ClientSession:
        """The session of the running loop (a new one if the loop changed, e.g. across ``asyncio.run`` calls)."""
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or session.closed or self._loop is not loop:
            if session is not None:
                _abandon(session)
            connector = aiohttp.TCPConnector(limit=self.limit, keepalive_timeout=30.0, ttl_dns_cache=300)
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                headers=self.headers,
                cookie_jar=aiohttp.DummyCookieJar(),  # an API client: no cookies to parse or send
            )
            self._session, self._loop = session, loop
        return session

    def error(self, exc: BaseException, pool_full: bool) -> ProviderError:
        """The :class:`ProviderError` of an aiohttp / timeout exception (same codes as with httpx)."""
        if isinstance(exc, aiohttp.ConnectionTimeoutError) and pool_full:
            return _pool_exhausted(self.name)
        if isinstance(exc, TimeoutError):  # ServerTimeoutError, ConnectionTimeoutError, SocketTimeoutError are TimeoutErrors too
            return ProviderError(f"provider {self.name!r} timed out ({type(exc).__name__})", code="llm.provider_timeout")
        return ProviderError(f"provider {self.name!r} unreachable: {type(exc).__name__}: {exc}", code="llm.provider_unreachable")

    async def post(self, path: str, payload: bytes) -> bytes:
        """POST ``payload``; the body of a 2xx/3xx answer, else the status as a provider error."""
        pool_full = self.inflight >= self.limit
        self.inflight += 1
        try:
            async with self.session().post(self.url(path), data=payload) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise _status_error(self.name, resp.status, resp.headers, body)
                return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.error(exc, pool_full) from None
        finally:
            self.inflight -= 1

    async def lines(self, path: str, payload: bytes) -> AsyncGenerator[bytes, None]:
        """POST ``payload`` and yield the answer's lines (server-sent events); closing the iterator frees the connection."""
        pool_full = self.inflight >= self.limit
        self.inflight += 1
        try:
            async with self.session().post(self.url(path), data=payload) as resp:
                if resp.status >= 400:
                    raise _status_error(self.name, resp.status, resp.headers, await resp.read())
                async for line in resp.content:
                    yield line
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.error(exc, pool_full) from None
        finally:
            self.inflight -= 1

    async def aclose(self) -> None:
        """Close the session (only from the loop that created it; another loop's session died with its loop)."""
        session, self._session = self._session, None
        if session is None or session.closed:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            await session.close()
        else:
            _abandon(session)

    def __del__(self) -> None:
        # A gateway dropped without aclose() (e.g. one per agent run): close quietly, as httpx did.
        session = getattr(self, "_session", None)
        if session is not None and not session.closed:
            _abandon(session)


def _abandon(session: aiohttp.ClientSession) -> None:
    """Drop a session without its 'Unclosed client session / connector' warnings at garbage collection.

    Its sockets are closed now when its loop still runs; otherwise they went with their loop.
    """
    connector = session.connector
    session.detach()
    # The synchronous part of connector.close(), so no awaitable is left un-awaited (no such public API in aiohttp 3.x).
    close = getattr(connector, "_close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


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
        self._http = _AioHTTP(name, base_url, timeout_s, headers)

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


# -- Anthropic ----------------------------------------------------------------
_STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls", "refusal": "content_filter"}


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


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
            system.append(_text(m.get("content")))
        elif role == "user":
            add("user", [{"type": "text", "text": _text(m.get("content"))}])
        elif role == "assistant":
            blocks: list[dict[str, Any]] = []
            if _text(m.get("content")):
                blocks.append({"type": "text", "text": _text(m.get("content"))})
            for call in m.get("tool_calls") or []:
                fn = call.get("function", {})
                try:
                    args = orjson.loads(fn.get("arguments") or "{}")
                except orjson.JSONDecodeError:
                    args = {}
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": args})
            add("assistant", blocks)
        elif role == "tool":
            add("user", [{"type": "tool_result", "tool_use_id": m.get("tool_call_id"), "content": _text(m.get("content"))}])
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
        self._client = _client(base_url or "https://api.anthropic.com/v1", timeout_s, headers)

    async def chat(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """One completion through the Messages API."""
        try:
            resp = await self._client.post("messages", content=orjson.dumps(to_anthropic(body, model)))
        except httpx.HTTPError as exc:
            raise _transport_error(self.name, exc) from None
        if resp.status_code >= 400:
            raise _status_error(self.name, resp.status_code, resp.headers, resp.content)
        return from_anthropic(orjson.loads(resp.content), model)

    async def stream(self, body: dict[str, Any], model: str) -> AsyncIterator[dict[str, Any]]:
        """A streamed completion: Anthropic events become OpenAI chunks (text and tool-call deltas)."""
        payload = {**to_anthropic(body, model), "stream": True}
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        tool_index: dict[int, int] = {}
        usage = {"prompt_tokens": 0, "completion_tokens": 0}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        try:
            async with self._client.stream("POST", "messages", content=orjson.dumps(payload)) as resp:
                if resp.status_code >= 400:
                    raise _status_error(self.name, resp.status_code, resp.headers, await resp.aread())
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
            raise _transport_error(self.name, exc) from None

    async def embed(self, inputs: list[str], model: str) -> dict[str, Any]:
        """Anthropic has no embeddings endpoint."""
        raise UpstreamRejected(
            f"provider {self.name!r} (anthropic) has no embeddings", hint="route embeddings to an openai or local provider"
        )

    async def aclose(self) -> None:
        """Close the pooled client."""
        await self._client.aclose()


# -- local, offline -----------------------------------------------------------
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
    last_sents = [s.strip() for s in _SENTENCE.split(_text(messages[last].get("content"))) if s.strip()]
    qs = [s for s in last_sents if "?" in s]
    question = qs[-1] if qs else " ".join(last_sents)
    context: list[str] = []
    for i, m in enumerate(messages):
        if m.get("role") in ("system", "developer", "user", "tool") and i != last:
            context += [s.strip() for s in _SENTENCE.split(_text(m.get("content"))) if s.strip()]
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
            import asyncio

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
            return _text(m.get("content"))
    return ""


def response_to_chunks(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A complete chat completion as the chunks a streaming provider would send (content word by word, then usage)."""
    cid, created, model = response.get("id", ""), response.get("created", int(time.time())), response.get("model", "")
    choice = response["choices"][0]
    message = choice.get("message", {})

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

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
