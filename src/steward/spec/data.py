"""The data section: where state is stored (``storage:``) and what lands in bronze (``sources:``)."""

from __future__ import annotations

import codecs
from typing import Literal

from pydantic import Field, field_validator

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
        encoding: Text encoding of CSV / JSON-lines landing files (``utf-8``, ``latin-1``, ``cp1252``, ``utf-16``...).
        max_bad_rows: Past this many unreadable rows in one file, the whole file is quarantined as one record.
        max_bad_share: Past this share of unreadable rows (after a first sample), the whole file is quarantined.
    """

    kind: Literal["files", "redis_stream"] = "files"
    path: str | None = None
    format: Literal["csv", "parquet", "jsonl"] = "csv"
    pattern: str = "*"
    contract: str
    csv: CsvOptions = Field(default_factory=CsvOptions)
    stream: str | None = None
    group: str = "steward"
    # -- reading landing files (Issue 15): encoding and the per-file quarantine cap
    encoding: str = "utf-8"
    max_bad_rows: int = Field(default=10_000, ge=0)
    max_bad_share: float = Field(default=0.5, gt=0, le=1)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}; use a Python codec name such as utf-8, latin-1, cp1252 or utf-16") from None
        return value
