"""A project opened for work: its spec plus lazily opened backends.

Stages take a :class:`Workspace` so they never construct backends themselves:
every backend (metadata, online store, counters and cache, stream, vector store,
model registry, run tracker) is opened here, once, through
:mod:`steward.backends.factory`, and closed by :meth:`Workspace.close`.
Tests build one on a temporary directory.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from steward.backends import factory
from steward.governance.audit import AuditTrail
from steward.spec import Spec, load_spec

if TYPE_CHECKING:
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
    from steward.data.lake import Lake

__all__ = ["Workspace", "open_workspace"]


# Backends opened on first use that Workspace.close releases (and opens again on the next use);
# the metadata store is closed last and stays closed: the lake and the audit trail hold it.
_BACKENDS = ("online_store", "counter_store", "cache_store", "stream", "vector_store", "model_registry", "tracker")


class Workspace:
    """A loaded spec and the backends it names, opened on first use."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    @property
    def root(self) -> Path:
        """The embedded-state directory (created if missing)."""
        self.spec.root.mkdir(parents=True, exist_ok=True)
        return self.spec.root

    @cached_property
    def metadata(self) -> MetadataStore:
        """The metadata store (SQLite by default, PostgreSQL by URL)."""
        self.root  # noqa: B018 - ensure the state dir exists for SQLite
        return factory.open_metadata(self.spec)

    @cached_property
    def online_store(self) -> OnlineStore:
        """The online feature store (SQLite under ROOT, or Redis by ``storage.online_store_url``)."""
        return factory.open_online_store(self.spec)

    @cached_property
    def counter_store(self) -> CounterStore:
        """Atomic counters for budgets and rate limits (SQLite under ROOT, or Redis by ``storage.cache_url``)."""
        return factory.open_counter_store(self.spec)

    @cached_property
    def cache_store(self) -> CacheStore:
        """The LLM response cache (SQLite under ROOT, or Redis by ``storage.cache_url``)."""
        return factory.open_cache_store(self.spec)

    @cached_property
    def stream(self) -> StreamBackend:
        """The stream backend for stream sources (a SQLite queue under ROOT, or Redis Streams by ``storage.stream_url``)."""
        return factory.open_stream(self.spec)

    @cached_property
    def vector_store(self) -> VectorStore:
        """The RAG vector store (LanceDB under ROOT/vectors, or a shared server by ``storage.vector_store_url``)."""
        return factory.open_vector_store(self.spec)

    @cached_property
    def model_registry(self) -> ModelRegistry:
        """The model registry (MLflow on ``storage.tracking_uri``, SQLite under ROOT by default)."""
        return factory.open_model_registry(self.spec)

    @cached_property
    def tracker(self) -> RunTracker:
        """The run tracker (MLflow on ``storage.tracking_uri``; artifacts under ``storage.artifact_root``)."""
        return factory.open_run_tracker(self.spec)

    @cached_property
    def lake(self) -> Lake:
        """The Delta lake."""
        # lazy: the lake pulls in Polars and PyArrow (~0.2 s), which commands that never read it
        # (registry, audit, LLM) should not pay for when they open a workspace
        from steward.data.lake import Lake

        url = self.spec.lake_url
        if "://" not in url:
            Path(url).mkdir(parents=True, exist_ok=True)
        return Lake(url, self.metadata, storage_options=_storage_options(url))

    @cached_property
    def audit(self) -> AuditTrail:
        """The hash-chained audit trail (in the metadata store, anchored in a file for local projects)."""
        anchor = None if self.spec.storage.metadata_url else self.root / "audit.head"
        return AuditTrail(self.metadata, anchor_path=anchor)

    def close(self) -> None:
        """Close every backend opened so far."""
        for name in _BACKENDS:
            backend = self.__dict__.pop(name, None)
            if backend is not None:
                backend.close()
        if "metadata" in self.__dict__:
            self.metadata.close()


def _storage_options(url: str) -> dict[str, str] | None:
    # Object-store credentials only ever come from the environment.
    if url.startswith("s3://"):
        opts = {
            k: v
            for k, v in {
                "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID"),
                "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY"),
                "AWS_REGION": os.environ.get("AWS_REGION"),
                "AWS_ENDPOINT_URL": os.environ.get("AWS_ENDPOINT_URL"),
            }.items()
            if v
        }
        opts.setdefault("AWS_S3_ALLOW_UNSAFE_RENAME", "true")
        return opts
    return None


def open_workspace(path: str | os.PathLike[str] | None = None) -> Workspace:
    """Load ``steward.yaml`` (or find it upwards) and return its workspace."""
    return Workspace(load_spec(path))
