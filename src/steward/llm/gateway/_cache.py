"""Response caching: exact (normalised request hash) and semantic (embedding similarity), with TTLs and metrics.

Exact entries live in the :class:`~steward.backends.base.CacheStore` (SQLite or
Redis, so replicas share them). Semantic entries are kept per process, per
scope (model, prompt version and the request's answer shape: ``response_format``,
tools, sampling and length settings, see :func:`cache_scope`), as L2-normalised
vectors; a lookup is one matrix-vector product. The embedding function is injected (tests use a tiny
deterministic one; the default is the offline MiniLM of :mod:`steward.llm.embeddings`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from prometheus_client import Counter

from steward.backends.base import CacheStore
from steward.llm.embeddings import get_embedder

__all__ = ["CACHE_REQUESTS", "ExactCache", "SemanticCache", "cache_key", "cache_scope", "request_text"]

logger = logging.getLogger(__name__)

CACHE_REQUESTS = Counter("steward_llm_cache_requests", "LLM gateway cache lookups", ["kind", "result"])

# Request fields that change the answer; everything else (stream, user, metadata...) is ignored.
_KEY_FIELDS = (
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "tools",
    "tool_choice",
    "response_format",
    "stop",
    "seed",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
)


# Fields that change the shape of the answer rather than its subject: a similar question asked with another of these
# (a JSON schema, tools, a temperature, a length) must never get the other's answer from the semantic cache.
_SHAPE_FIELDS = ("response_format", "tools", "tool_choice", "temperature", "max_tokens", "max_completion_tokens")


def cache_key(model: str, prompt_version: str, body: dict[str, Any]) -> str:
    """The exact-cache key: SHA-256 of the request's answer-relevant fields, keys sorted.

    The key covers the whole :func:`cache_scope` (its fields are among the hashed ones) and the messages.
    """
    norm = {k: body[k] for k in _KEY_FIELDS if body.get(k) is not None}
    norm["model"] = model
    norm["prompt_version"] = prompt_version
    return "llm:" + hashlib.sha256(orjson.dumps(norm, option=orjson.OPT_SORT_KEYS)).hexdigest()


def cache_scope(model: str, prompt_version: str, body: dict[str, Any]) -> str:
    """The semantic-cache scope: model, prompt version and a hash of the answer-shaping fields.

    Only requests in the same scope can share an answer by similarity: a request with a JSON-schema
    ``response_format`` (or other tools, ``tool_choice``, ``temperature``, ``max_tokens``) never gets
    a plain-text answer cached for a similar question.
    """
    shape = {k: body[k] for k in _SHAPE_FIELDS if body.get(k) is not None}
    if not shape:
        return f"{model}|{prompt_version}"
    digest = hashlib.sha256(orjson.dumps(shape, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return f"{model}|{prompt_version}|{digest}"


def request_text(body: dict[str, Any]) -> str:
    """The text a semantic lookup embeds: every message's role and content."""
    parts = []
    for m in body.get("messages", []):
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        parts.append(f"{m.get('role')}: {content or ''}")
    return "\n".join(parts)


class ExactCache:
    """Exact-match cache over a :class:`CacheStore`.

    Args:
        store: Where entries live.
        ttl_s: Time to live of an entry.
    """

    def __init__(self, store: CacheStore, ttl_s: float) -> None:
        self.store = store
        self.ttl_s = ttl_s

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached response, or None (counted as hit or miss)."""
        raw = self.store.cache_get(key)
        CACHE_REQUESTS.labels("exact", "hit" if raw is not None else "miss").inc()
        if raw is None:
            return None
        value: dict[str, Any] = orjson.loads(raw)
        return value

    def put(self, key: str, response: dict[str, Any]) -> None:
        """Store a response."""
        self.store.cache_set(key, orjson.dumps(response), self.ttl_s)


@dataclass
class _Scope:
    vectors: list[np.ndarray] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    expires: list[float] = field(default_factory=list)


class SemanticCache:
    """Similarity cache: a request whose embedding is within ``threshold`` cosine of a cached one gets its answer.

    Args:
        embed: ``list[str] -> array (n, d)`` of L2-normalised vectors.
        threshold: Minimum cosine similarity for a hit.
        ttl_s: Time to live of an entry.
        max_entries: Per scope; the oldest entries are dropped first.
        clock: Injected for tests.
    """

    def __init__(
        self,
        embed: Callable[[list[str]], Any],
        threshold: float = 0.95,
        ttl_s: float = 3600.0,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.embed = embed
        self.threshold = threshold
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._scopes: dict[str, _Scope] = {}
        self._lock = threading.Lock()

    def vector(self, text: str) -> np.ndarray:
        """Embed one text as a normalised float32 vector."""
        v = np.asarray(self.embed([text]), dtype=np.float32).reshape(-1)
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else v

    def get(self, scope: str, vector: np.ndarray) -> tuple[dict[str, Any], float] | None:
        """The best cached response above the threshold in ``scope`` and its similarity, or None."""
        now = self.clock()
        with self._lock:
            sc = self._scopes.get(scope)
            best: tuple[dict[str, Any], float] | None = None
            if sc is not None and sc.vectors:
                live = [i for i, e in enumerate(sc.expires) if e > now]
                if len(live) != len(sc.expires):
                    sc.vectors = [sc.vectors[i] for i in live]
                    sc.responses = [sc.responses[i] for i in live]
                    sc.expires = [sc.expires[i] for i in live]
                if sc.vectors:
                    sims = np.stack(sc.vectors) @ vector
                    i = int(np.argmax(sims))
                    if float(sims[i]) >= self.threshold:
                        best = (sc.responses[i], float(sims[i]))
        CACHE_REQUESTS.labels("semantic", "hit" if best else "miss").inc()
        return best

    def put(self, scope: str, vector: np.ndarray, response: dict[str, Any]) -> None:
        """Store a response under ``scope``."""
        with self._lock:
            sc = self._scopes.setdefault(scope, _Scope())
            sc.vectors.append(vector)
            sc.responses.append(response)
            sc.expires.append(self.clock() + self.ttl_s)
            if len(sc.vectors) > self.max_entries:
                del sc.vectors[0], sc.responses[0], sc.expires[0]


def default_embed(texts: list[str]) -> Any:
    """The offline MiniLM embedder of :mod:`steward.llm.embeddings` (the model loads on first use)."""
    return get_embedder().embed(texts)
