"""The one place that turns ``steward.yaml`` storage settings into concrete backends.

Only :class:`steward.workspace.Workspace` calls these openers; stages take the opened
backends from the workspace, typed by the Protocols in :mod:`steward.backends.base`.
Every backend module imports its client library (redis, psycopg, lancedb, chromadb,
mlflow) inside its constructor or first call, so importing them all here is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from steward.backends.base import (
    CacheStore,
    CounterStore,
    MetadataStore,
    ModelRegistry,
    OnlineStore,
    RunTracker,
    StreamBackend,
    VectorStore,
)
from steward.backends.kv_redis import RedisKV
from steward.backends.kv_sqlite import SqliteKV
from steward.backends.mlflow_registry import MlflowModelRegistry
from steward.backends.mlflow_store import artifact_location, tracking_uri
from steward.backends.mlflow_tracker import MlflowRunTracker
from steward.backends.online_redis import RedisOnlineStore
from steward.backends.online_sqlite import SqliteOnlineStore
from steward.backends.redis_stream import RedisStreamBackend
from steward.backends.sql_metadata import open_metadata_store
from steward.backends.sqlite_queue import SqliteQueue
from steward.backends.vector_chroma import ChromaVectorStore, is_chroma_url
from steward.backends.vector_lancedb import LanceDBVectorStore
from steward.errors import SpecError

if TYPE_CHECKING:
    from steward.spec import Spec

__all__ = [
    "metadata_url_for",
    "open_cache_store",
    "open_counter_store",
    "open_metadata",
    "open_model_registry",
    "open_online_store",
    "open_run_tracker",
    "open_stream",
    "open_vector_store",
]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def metadata_url_for(spec: Spec) -> str:
    """The metadata store URL: ``storage.metadata_url`` or SQLite under the state root."""
    if spec.storage.metadata_url:
        return spec.storage.metadata_url
    return f"sqlite:///{spec.root / 'metadata.db'}"


def open_metadata(spec: Spec) -> MetadataStore:
    """Open (and migrate) the metadata store the spec asks for."""
    return open_metadata_store(metadata_url_for(spec))


def _open_kv(spec: Spec) -> RedisKV | SqliteKV:
    url = spec.storage.cache_url
    if url and url.startswith(_REDIS_SCHEMES):
        return RedisKV(url, prefix=f"steward:{spec.project}:")
    spec.root.mkdir(parents=True, exist_ok=True)
    return SqliteKV(spec.root / "kv.db")


def open_counter_store(spec: Spec) -> CounterStore:
    """Atomic counters for budgets and rate limits: Redis when ``storage.cache_url`` is ``redis://``, else SQLite under ROOT."""
    return _open_kv(spec)


def open_cache_store(spec: Spec) -> CacheStore:
    """The LLM response cache store: Redis when ``storage.cache_url`` is ``redis://``, else SQLite under ROOT."""
    return _open_kv(spec)


def open_stream(spec: Spec) -> StreamBackend:
    """The stream backend: Redis Streams at ``storage.stream_url``, else a SQLite queue under the state root."""
    if spec.storage.stream_url:
        return RedisStreamBackend(spec.storage.stream_url)
    spec.root.mkdir(parents=True, exist_ok=True)
    return SqliteQueue(spec.root / "streams.db")


def open_vector_store(spec: Spec) -> VectorStore:
    """The RAG vector store: a shared Chroma server at ``storage.vector_store_url``
    (``chroma://HOST:PORT`` or ``http://HOST:PORT``), else LanceDB under ``ROOT/vectors``.

    Raises:
        SpecError: the URL names a server kind Steward cannot use.
    """
    url = spec.storage.vector_store_url
    if url:
        if is_chroma_url(url):
            return ChromaVectorStore(url, prefix=spec.project)
        raise SpecError(
            f"{spec.spec_path}: key 'storage.vector_store_url': unsupported vector server {url!r}",
            code="spec.vector_store_url",
            hint="use chroma://HOST:PORT (Chroma's server), or remove the key for LanceDB under ROOT/vectors",
        )
    return LanceDBVectorStore(spec.root / "vectors")


def open_online_store(spec: Spec, *, prefix: str | None = None) -> OnlineStore:
    """The online feature store: Redis at ``storage.online_store_url``, else SQLite at ``ROOT/online.db``.

    Args:
        prefix: Redis key prefix; default ``steward:PROJECT:features:``.
    """
    url = spec.storage.online_store_url
    if url:
        if not url.startswith(_REDIS_SCHEMES):
            raise SpecError(
                f"{spec.spec_path}: key 'storage.online_store_url': unsupported online store {url!r}",
                code="spec.online_store_url",
                hint="use redis://HOST:PORT/DB, or remove the key for SQLite under ROOT",
            )
        return RedisOnlineStore(url, prefix=prefix if prefix is not None else f"steward:{spec.project}:features:")
    spec.root.mkdir(parents=True, exist_ok=True)
    return SqliteOnlineStore(spec.root / "online.db")


def open_model_registry(spec: Spec) -> ModelRegistry:
    """The model registry: MLflow's, on the store ``storage.tracking_uri`` names (SQLite under ROOT by default).

    Nothing is connected until the first call, so opening never fails on an unreachable server.
    """
    return MlflowModelRegistry(tracking_uri(spec))


def open_run_tracker(spec: Spec) -> RunTracker:
    """The run tracker: MLflow tracking on ``storage.tracking_uri``, artifacts under ``storage.artifact_root`` (or ROOT/mlartifacts)."""
    return MlflowRunTracker(tracking_uri(spec), artifact_location(spec))
