"""Pipeline runs, batches and lineage in the metadata store.

A run is one invocation of ingest or the pipeline; it records its parameters,
its status and its accounting (``pipeline_runs.summary``, JSON). A batch is
one landing file or one stream read, keyed by ``(source, batch_id)``; its row
accounting lives in ``batches``. Tables a run read are recorded as lineage
inputs (its outputs are recorded by :class:`~steward.data.lake.Lake` on commit).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from steward._primitives import utcnow
from steward.backends.base import MetadataStore
from steward.errors import LockHeld, NotFound

__all__ = [
    "BATCH_LANDED",
    "BATCH_PROMOTED",
    "BATCH_REJECTED",
    "batch_rows",
    "finish_run",
    "get_run",
    "list_runs",
    "new_run_id",
    "record_input",
    "run_inputs",
    "source_lock",
    "start_run",
    "upsert_batch",
]

logger = logging.getLogger(__name__)

BATCH_LANDED = "landed"
"""The batch is in bronze (and its unparsable lines in quarantine)."""
BATCH_PROMOTED = "promoted"
"""The batch went through the contract gate: its rows are in silver, quarantine or counted as duplicates."""
BATCH_REJECTED = "rejected"
"""The landing file was quarantined as a whole (rule ``file``): nothing of it is in bronze or silver."""

_LOCK_TTL_S = 3600.0


def new_run_id(kind: str) -> str:
    """A sortable, unique run id such as ``pipeline-20260101T120000-1a2b3c``."""
    return f"{kind}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


def start_run(md: MetadataStore, kind: str, params: dict[str, Any], run_id: str | None = None) -> str:
    """Insert a ``running`` row in ``pipeline_runs`` and return its id."""
    rid = run_id or new_run_id(kind)
    md.execute(
        "INSERT INTO pipeline_runs (run_id, kind, status, started_at, params) VALUES (?, ?, 'running', ?, ?)",
        (rid, kind, utcnow(), json.dumps(params, default=str, sort_keys=True)),
    )
    return rid


def finish_run(md: MetadataStore, run_id: str, status: str, summary: dict[str, Any], error: str | None = None) -> None:
    """Close a run with its status (``succeeded`` / ``failed``) and accounting summary."""
    md.execute(
        "UPDATE pipeline_runs SET status = ?, finished_at = ?, summary = ?, error = ? WHERE run_id = ?",
        (status, utcnow(), json.dumps(summary, default=str, sort_keys=True), error, run_id),
    )


def get_run(md: MetadataStore, run_id: str) -> dict[str, Any]:
    """One run with ``params`` and ``summary`` decoded.

    Raises:
        NotFound: no such run.
    """
    row = md.fetchone("SELECT * FROM pipeline_runs WHERE run_id = ?", (run_id,))
    if row is None:
        raise NotFound(f"no pipeline run {run_id!r}", hint="list runs with 'steward pipeline runs'")
    return _decode_run(row)


def list_runs(md: MetadataStore, limit: int = 20) -> list[dict[str, Any]]:
    """The newest runs first."""
    rows = md.fetchall("SELECT * FROM pipeline_runs ORDER BY started_at DESC LIMIT ?", (limit,))
    return [_decode_run(r) for r in rows]


def _decode_run(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for k in ("params", "summary"):
        try:
            out[k] = json.loads(row.get(k) or "{}")
        except ValueError:
            out[k] = {}
    return out


def record_input(md: MetadataStore, run_id: str, table_ref: str) -> None:
    """Record that ``run_id`` read ``table_ref`` (a pinned ``layer.name@version``)."""
    md.execute(
        "INSERT INTO lineage (run_id, direction, table_ref, created_at) VALUES (?, 'input', ?, ?) ON CONFLICT (run_id, direction, table_ref) DO NOTHING",
        (run_id, table_ref, utcnow()),
    )


def run_inputs(md: MetadataStore, run_id: str) -> list[str]:
    """The pinned tables (``layer.name@version``) a run recorded as read, sorted."""
    rows = md.fetchall("SELECT table_ref FROM lineage WHERE run_id = ? AND direction = 'input'", (run_id,))
    return sorted(str(r["table_ref"]) for r in rows)


def batch_rows(md: MetadataStore, source: str) -> dict[str, dict[str, Any]]:
    """Recorded batches of a source, by batch id."""
    return {str(r["batch_id"]): r for r in md.fetchall("SELECT * FROM batches WHERE source = ?", (source,))}


def upsert_batch(md: MetadataStore, source: str, batch_id: str, *, origin: str, run_id: str, status: str, counts: dict[str, Any]) -> None:
    """Insert or update one batch row with its status and accounting.

    ``counts`` may hold ``rows_read``, ``rows_bronze``, ``rows_silver``,
    ``rows_quarantined``, ``rows_duplicate``, ``rows_late``, ``rows_parse_failed``,
    ``contract_version`` and ``details`` (a dict stored as JSON).
    """
    now = utcnow()
    cols = ["rows_read", "rows_bronze", "rows_silver", "rows_quarantined", "rows_duplicate", "rows_late", "rows_parse_failed"]
    values = [int(counts.get(c, 0) or 0) for c in cols]
    details = json.dumps(counts.get("details", {}), default=str, sort_keys=True)
    cv = counts.get("contract_version")
    with md.transaction():
        existing = md.fetchone("SELECT batch_id FROM batches WHERE source = ? AND batch_id = ?", (source, batch_id))
        if existing is None:
            md.execute(
                f"INSERT INTO batches (batch_id, source, origin, run_id, status, {', '.join(cols)}, contract_version, details, created_at, updated_at) "
                f"VALUES (?, ?, ?, ?, ?, {', '.join('?' * len(cols))}, ?, ?, ?, ?)",
                (batch_id, source, origin, run_id, status, *values, cv, details, now, now),
            )
        else:
            md.execute(
                f"UPDATE batches SET origin = ?, run_id = ?, status = ?, {', '.join(f'{c} = ?' for c in cols)}, contract_version = ?, details = ?, updated_at = ? "
                "WHERE source = ? AND batch_id = ?",
                (origin, run_id, status, *values, cv, details, now, source, batch_id),
            )


def _owner(run_id: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{run_id}"


def _stale(owner: str) -> bool:
    """True when the owner is a process on this host that no longer exists (it crashed)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextmanager
def source_lock(md: MetadataStore, source: str, run_id: str) -> Iterator[None]:
    """Hold the per-source pipeline lock so two runs never write the same tables at once.

    A lock left behind by a crashed process on this host is taken over (its pid
    is gone); a live holder raises :class:`~steward.errors.LockHeld`.
    """
    name = f"pipeline:{source}"
    owner = _owner(run_id)
    if not md.try_lock(name, owner, _LOCK_TTL_S):
        row = md.fetchone("SELECT owner FROM locks WHERE name = ?", (name,))
        holder = str(row["owner"]) if row else ""
        if holder and _stale(holder):
            logger.warning("taking over lock %s from crashed holder %s", name, holder)
            md.release_lock(name, holder)
            # the holder's run never finished: say so instead of leaving it 'running' forever
            md.execute(
                "UPDATE pipeline_runs SET status = 'crashed', finished_at = ?, error = ? WHERE run_id = ? AND status = 'running'",
                (utcnow(), f"process died; lock {name} taken over by {run_id}", holder.split(":", 2)[-1]),
            )
        if not md.try_lock(name, owner, _LOCK_TTL_S):
            raise LockHeld(
                f"source {source!r} is being processed by {holder or 'another run'}", hint="wait for that run to finish, then retry"
            )
    try:
        yield
    finally:
        md.release_lock(name, owner)
