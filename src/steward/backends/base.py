"""Protocols for every outside system Steward talks to.

Stages depend on these, never on a concrete backend. Each Protocol has an
embedded default (files / SQLite) and a scale-out implementation (PostgreSQL,
Redis, S3, ...), chosen by :func:`steward.backends.factory` from ``steward.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "CacheStore",
    "CounterSpec",
    "CounterStore",
    "Dialect",
    "MetadataStore",
    "OnlineStore",
    "Row",
    "StreamBackend",
    "StreamEntry",
    "VectorHit",
    "VectorRecord",
    "VectorStore",
]

Dialect = Literal["sqlite", "postgresql"]
Row = dict[str, Any]


@runtime_checkable
class MetadataStore(Protocol):
    """A small relational store for runs, batches, lineage, audit and locks.

    SQL is written once in a portable subset and uses ``?`` placeholders; the
    PostgreSQL implementation rewrites them. Schema changes go through the
    ordered migrations in :mod:`steward.backends.migrations`.
    """

    dialect: Dialect
    url: str

    def migrate(self) -> list[int]:
        """Apply pending migrations in order; return the versions applied."""
        ...

    def schema_version(self) -> int:
        """The highest applied migration version (0 for an empty store)."""
        ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the number of affected rows."""
        ...

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query and return its rows as dicts."""
        ...

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Run a query and return its first row, or None."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """A block whose statements commit together or not at all."""
        ...

    def try_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take a named lock (safe across processes); False when someone else holds it."""
        ...

    def release_lock(self, name: str, owner: str) -> None:
        """Release a lock held by ``owner`` (no-op otherwise)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def iter_rows(store: MetadataStore, sql: str, params: Sequence[Any] = ()) -> Iterator[Row]:
    """Convenience: iterate over a query's rows."""
    yield from store.fetchall(sql, params)


# One counter to reserve against: (key, amount, limit or None for "no cap", ttl in seconds).
CounterSpec = tuple[str, int, int | None, float]


@runtime_checkable
class CounterStore(Protocol):
    """Atomic counters for budgets and rate limits (SQLite by default, Redis across replicas).

    ``reserve`` checks every counter against its limit and increments all of them in
    one atomic step, so concurrent callers (threads, processes, replicas) never
    overspend together. Amounts are integers (tokens, requests, micro-dollars).
    """

    def reserve(self, counters: Sequence[CounterSpec]) -> int:
        """Add every amount if all stay within their limits; return -1, else the index of the first counter that would exceed."""
        ...

    def adjust(self, counters: Sequence[tuple[str, int, float]]) -> None:
        """Add (possibly negative) deltas without a limit check: settle a reservation with the actual amount."""
        ...

    def get(self, key: str) -> int:
        """The current value of a counter (0 when absent or expired)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class CacheStore(Protocol):
    """A byte-value cache with per-entry TTL (the gateway's exact-match response cache)."""

    def cache_get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired."""
        ...

    def cache_set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store a value for ``ttl_s`` seconds."""
        ...


StreamEntry = tuple[str, dict[str, str]]
"""One stream message: ``(message_id, fields)``."""


@runtime_checkable
class StreamBackend(Protocol):
    """An append-only message stream with consumer groups and at-least-once delivery.

    Semantics follow Redis Streams: a message read by a group stays *pending*
    for its consumer until acknowledged; an unacknowledged message can be
    claimed by another consumer after it has been idle long enough. Embedded
    default: a SQLite queue; scale-out: Redis Streams.
    """

    url: str

    def ensure_group(self, stream: str, group: str) -> None:
        """Create the consumer group (and the stream) if missing; reads start at the beginning."""
        ...

    def add(self, stream: str, fields: dict[str, str]) -> str:
        """Append a message; return its id."""
        ...

    def read(self, stream: str, group: str, consumer: str, *, count: int = 100, pending: bool = False) -> list[StreamEntry]:
        """Deliver up to ``count`` new messages to ``consumer`` (or, with ``pending``, re-read its own unacknowledged ones)."""
        ...

    def claim(self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 100) -> list[StreamEntry]:
        """Take over messages pending (unacknowledged) longer than ``min_idle_ms`` for any consumer."""
        ...

    def ack(self, stream: str, group: str, ids: list[str]) -> int:
        """Acknowledge messages; return how many were pending."""
        ...

    def pending_count(self, stream: str, group: str) -> int:
        """Messages delivered to the group but not yet acknowledged."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


# --- vector store (RAG) -------------------------------------------------------------------


@dataclass(frozen=True)
class VectorRecord:
    """One stored chunk: its text, where it comes from, and its document's content hash.

    ``chunk_id`` is stable across ingests (``doc_id#section#n``); ``doc_hash`` is the hash of
    the whole source document, so an unchanged document is recognised without re-embedding.
    """

    chunk_id: str
    doc_id: str
    section: str
    title: str
    text: str
    doc_hash: str
    position: int = 0


@dataclass(frozen=True)
class VectorHit:
    """A search result: the record and its cosine similarity to the query (higher is closer)."""

    record: VectorRecord
    score: float


@runtime_checkable
class VectorStore(Protocol):
    """Chunks and their embeddings, in named collections (LanceDB by default, a shared server to scale out).

    Vectors are L2-normalised float32 rows; ``search`` ranks by cosine similarity.
    """

    url: str

    def add(self, collection: str, records: Sequence[VectorRecord], vectors: Any) -> None:
        """Append records with their vectors (an ``(n, dim)`` float32 array)."""
        ...

    def delete_docs(self, collection: str, doc_ids: Sequence[str]) -> None:
        """Remove every chunk of the given documents."""
        ...

    def doc_hashes(self, collection: str) -> dict[str, str]:
        """``doc_id -> doc_hash`` of every stored document (empty for a new collection)."""
        ...

    def search(self, collection: str, vector: Any, k: int) -> list[VectorHit]:
        """The ``k`` nearest chunks to a query vector, best first."""
        ...

    def records(self, collection: str) -> list[VectorRecord]:
        """Every stored record (for the keyword index), in a stable order."""
        ...

    def count(self, collection: str) -> int:
        """Number of stored chunks (0 for a new collection)."""
        ...

    def version(self, collection: str) -> str:
        """A token that changes whenever the collection changes (keys in-process caches)."""
        ...

    def drop(self, collection: str) -> None:
        """Delete a whole collection (no-op when absent)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


# --- online feature store -----------------------------------------------------------------


@runtime_checkable
class OnlineStore(Protocol):
    """Latest feature values by entity key, for serving (SQLite by default, Redis across replicas).

    Items live in namespaces (one per feature table); values are opaque strings
    (the features stage serialises them). ``replace`` swaps a whole namespace at
    once, so readers never see a half-written table; ``read`` answers any number
    of keys across namespaces in one round trip.
    """

    url: str

    def replace(self, namespace: str, items: Mapping[str, str]) -> int:
        """Atomically replace every item of ``namespace`` with ``items``; return how many were written."""
        ...

    def read(self, requests: Mapping[str, Sequence[str]]) -> dict[str, list[str | None]]:
        """Values for ``{namespace: [key, ...]}``, in request order (None when absent), in one round trip."""
        ...

    def count(self, namespace: str) -> int:
        """Number of items in a namespace (0 when absent)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
