"""The data section: where state is stored (``storage:``) and what lands in bronze (``sources:``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steward.spec._base import _Strict

__all__ = ["CsvOptions", "SourceSpec", "StorageSpec"]


class StorageSpec(_Strict):
    """Where Steward keeps its state. Every URL is optional; the default is local disk.

    Attributes:
        root: Directory for all embedded state, relative to ``steward.yaml``.
        lake_url: Root of the Delta lake (a path or ``s3://``); default ``ROOT/lake``.
        metadata_url: ``postgresql://...`` to keep metadata in PostgreSQL; default SQLite.
        tracking_uri: MLflow tracking URI; default SQLite under ROOT.
        artifact_root: MLflow artifact root; default ``ROOT/mlartifacts``.
        online_store_url: ``redis://...`` for the online feature store; default SQLite.
        stream_url: ``redis://...`` for Redis Streams; default a local SQLite queue.
        vector_store_url: a shared vector server; default LanceDB under ROOT.
        cache_url: ``redis://...`` for LLM cache, budgets and rate limits; default SQLite.
    """

    root: str = ".steward"
    lake_url: str | None = None
    metadata_url: str | None = None
    tracking_uri: str | None = None
    artifact_root: str | None = None
    online_store_url: str | None = None
    stream_url: str | None = None
    vector_store_url: str | None = None
    cache_url: str | None = None


class CsvOptions(_Strict):
    """How to read a CSV landing file."""

    delimiter: str = ","
    header: bool = True
    null_values: list[str] = Field(default_factory=lambda: ["", "NA", "NULL", "null"])


class SourceSpec(_Strict):
    """One data source that lands in bronze.

    Attributes:
        kind: ``files`` (a landing directory) or ``redis_stream``.
        path: Landing directory (for ``files``), relative to ``steward.yaml``.
        format: File format of landing files.
        pattern: Glob of files to pick up inside ``path``.
        contract: Name of the contract (in ``contracts``) that gates bronze → silver.
        stream: Redis stream key (for ``redis_stream``).
        group: Consumer group name (for ``redis_stream``).
    """

    kind: Literal["files", "redis_stream"] = "files"
    path: str | None = None
    format: Literal["csv", "parquet", "jsonl"] = "csv"
    pattern: str = "*"
    contract: str
    csv: CsvOptions = Field(default_factory=CsvOptions)
    stream: str | None = None
    group: str = "steward"
