"""Protocols for every outside system Steward talks to.

Stages depend on these, never on a concrete backend. Each Protocol has an
embedded default (files / SQLite) and a scale-out implementation (PostgreSQL,
Redis, S3, ...), chosen by :mod:`steward.backends.factory` from ``steward.yaml``;
stages get the opened ones from the :class:`~steward.workspace.Workspace`.

Every implementation raises Steward's own errors (:mod:`steward.errors`): a
missing object is :class:`~steward.errors.NotFound`, an unreachable server
:class:`~steward.errors.BackendUnavailable`, a bad name or parameter
:class:`~steward.errors.ValidationFailed`, never the client library's exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "CacheStore",
    "CounterSpec",
    "CounterStore",
    "Dialect",
    "LoggedModel",
    "MetadataStore",
    "ModelFlavor",
    "ModelMetadata",
    "ModelRegistry",
    "ModelVersionInfo",
    "OnlineStore",
    "Row",
    "RunInfo",
    "RunTracker",
    "SignatureField",
    "StreamBackend",
    "StreamEntry",
    "VectorHit",
    "VectorRecord",
    "VectorStore",
    "tracked_run",
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

    def close(self) -> None:
        """Release connections."""
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


# --- model registry and run tracking (MLflow by default) ------------------------------------

ModelFlavor = Literal["lightgbm", "sklearn"]
"""How a model is stored: LightGBM's native text format, or scikit-learn through skops (never pickle)."""


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered model version.

    Attributes:
        name: The registered model.
        version: The version number.
        run_id: The tracked run that produced it, when known.
        source: Where its files are (a URI :meth:`ModelRegistry.download_model` accepts).
        tags: Version tags (``steward.manifest``, ``steward.metric``, ``steward.gate``, ...).
        aliases: Aliases pointing at this version, sorted.
        created_at: Registration time, ISO 8601 UTC to the second ("" when unknown).
    """

    name: str
    version: int
    run_id: str | None
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    created_at: str = ""


@dataclass(frozen=True)
class SignatureField:
    """One input column of a stored model's signature (``type``: ``double``, ``long``, ``string``, ``boolean``, ...)."""

    name: str
    type: str
    required: bool = True


@dataclass(frozen=True)
class ModelMetadata:
    """What a downloaded model's descriptor says: its custom metadata, how it is stored, and its input signature.

    Attributes:
        metadata: Custom metadata logged with the model (``metadata["steward"]`` holds the feature encoding).
        flavors: How the model is stored, per flavour (``flavors["sklearn"]["serialization_format"] == "skops"``).
        inputs: The column signature, or None when the model has none (or a tensor one).
    """

    metadata: dict[str, Any] = field(default_factory=dict)
    flavors: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: tuple[SignatureField, ...] | None = None


@dataclass(frozen=True)
class LoggedModel:
    """A model logged with a run, before (or without) registration; ``model_uri`` is what registration takes."""

    model_uri: str


@dataclass(frozen=True)
class RunInfo:
    """A tracked run, as callers read it."""

    run_id: str
    experiment_id: str
    status: str
    run_name: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class ModelRegistry(Protocol):
    """Registered models, their versions, tags and aliases, and their files (MLflow's registry by default)."""

    uri: str

    def exists(self) -> bool:
        """Whether the registry's store exists; an embedded one that was never written is not created by asking."""
        ...

    def register_version(self, name: str, model_uri: str, *, tags: Mapping[str, str]) -> ModelVersionInfo:
        """Register a logged model as a new version of ``name`` (the model is created on first use)."""
        ...

    def get_version(self, name: str, version: int) -> ModelVersionInfo:
        """One version. Raises :class:`~steward.errors.NotFound` when the model or version does not exist."""
        ...

    def list_models(self) -> list[str]:
        """Names of every registered model, sorted."""
        ...

    def list_versions(self, name: str) -> list[ModelVersionInfo]:
        """Every version of ``name`` with its aliases, newest first. Raises NotFound when there is no such model."""
        ...

    def aliases(self, name: str) -> dict[str, int]:
        """``alias -> version`` of one model (empty when the model does not exist)."""
        ...

    def get_alias(self, name: str, alias: str) -> int | None:
        """The version an alias points at, or None when it is unset or the model does not exist."""
        ...

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version`` (NotFound when the version does not exist)."""
        ...

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias."""
        ...

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        """Set one tag on a version."""
        ...

    def download_model(self, model_uri: str, dst: Path) -> Path:
        """Download a model's files (a version's ``source`` or a logged model's URI) under ``dst``; return their directory."""
        ...

    def model_metadata(self, local_dir: Path) -> ModelMetadata:
        """Read the descriptor of a downloaded model directory (nothing is deserialized)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class RunTracker(Protocol):
    """Experiments and runs: parameters, metrics, tags, artifacts and logged models (MLflow tracking by default).

    Artifact paths are relative to the run (``metrics/metrics.json``).
    """

    uri: str

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created on first use (safe when processes race to create it)."""
        ...

    def start_run(self, experiment_id: str, *, run_name: str, tags: Mapping[str, str]) -> str:
        """Start a run, active on this thread until :meth:`end_run`; return its id."""
        ...

    def end_run(self, run_id: str, *, failed: bool = False) -> None:
        """Mark a run finished (or failed)."""
        ...

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        """Record parameters (write-once per key)."""
        ...

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Record metric values."""
        ...

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set (or overwrite) run tags."""
        ...

    def log_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
        """Store ``data`` as a JSON (or YAML, by extension) artifact."""
        ...

    def log_artifact(self, run_id: str, local_path: Path, artifact_path: str | None = None) -> None:
        """Copy a local file into the run's artifacts (under ``artifact_path``)."""
        ...

    def log_model(
        self,
        run_id: str,
        model: Any,
        *,
        flavor: ModelFlavor,
        input_example: Any,
        output_example: Any,
        pip_requirements: Sequence[str],
        metadata: Mapping[str, Any],
        trusted_types: Sequence[str] = (),
    ) -> LoggedModel:
        """Log a fitted model in its native flavour with the run active on this thread.

        Args:
            input_example: A few input rows; with ``output_example`` they define the signature.
            trusted_types: For ``sklearn``: the (already vetted) types its skops file may hold.
        """
        ...

    def get_run(self, run_id: str) -> RunInfo:
        """One run. Raises :class:`~steward.errors.NotFound` when there is no such run."""
        ...

    def load_dict(self, run_id: str, artifact_file: str) -> dict[str, Any]:
        """A JSON artifact of a run. Raises NotFound when the run or the artifact does not exist."""
        ...

    def download_artifact(self, run_id: str, artifact_path: str, dst: Path) -> Path:
        """Download one artifact (file or directory) under ``dst``; return its local path. NotFound when absent."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@contextmanager
def tracked_run(tracker: RunTracker, experiment_id: str, *, run_name: str, tags: Mapping[str, str]) -> Iterator[str]:
    """A run for the duration of a block: finished when the block ends, failed when it raises; yields the run id."""
    run_id = tracker.start_run(experiment_id, run_name=run_name, tags=tags)
    try:
        yield run_id
    except BaseException:
        tracker.end_run(run_id, failed=True)
        raise
    tracker.end_run(run_id)
