"""A project opened for work: its spec plus lazily opened backends.

Stages take a :class:`Workspace` so they never construct backends themselves;
tests build one on a temporary directory.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from steward.spec import Spec, load_spec

if TYPE_CHECKING:
    from steward.backends.base import MetadataStore
    from steward.data.lake import Lake
    from steward.governance.audit import AuditTrail

__all__ = ["Workspace", "open_workspace"]


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
        from steward.backends.factory import open_metadata

        self.root  # noqa: B018 - ensure the state dir exists for SQLite
        return open_metadata(self.spec)

    @cached_property
    def lake(self) -> Lake:
        """The Delta lake."""
        from steward.data.lake import Lake

        url = self.spec.lake_url
        if "://" not in url:
            Path(url).mkdir(parents=True, exist_ok=True)
        return Lake(url, self.metadata, storage_options=_storage_options(url))

    @cached_property
    def audit(self) -> AuditTrail:
        """The hash-chained audit trail (in the metadata store, anchored in a file for local projects)."""
        from steward.governance.audit import AuditTrail

        anchor = None if self.spec.storage.metadata_url else self.root / "audit.head"
        return AuditTrail(self.metadata, anchor_path=anchor)

    def close(self) -> None:
        """Close opened backends."""
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
