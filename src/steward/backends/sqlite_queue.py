"""A local SQLite queue with Redis-Streams semantics: the embedded :class:`~steward.backends.base.StreamBackend`.

Messages are appended with a per-stream sequence; a consumer group remembers
the last sequence it delivered; delivered messages stay pending for their
consumer until acknowledged and can be claimed by another consumer after an
idle time. Safe across processes (SQLite ``BEGIN IMMEDIATE`` transactions).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from steward.backends.base import StreamEntry

__all__ = ["SqliteQueue"]

logger = logging.getLogger(__name__)

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS stream_messages (
        stream TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, fields TEXT NOT NULL,
        PRIMARY KEY (stream, seq))""",
    """CREATE TABLE IF NOT EXISTS stream_groups (
        stream TEXT NOT NULL, grp TEXT NOT NULL, last_seq INTEGER NOT NULL,
        PRIMARY KEY (stream, grp))""",
    """CREATE TABLE IF NOT EXISTS stream_pending (
        stream TEXT NOT NULL, grp TEXT NOT NULL, seq INTEGER NOT NULL, consumer TEXT NOT NULL,
        delivered_at REAL NOT NULL, deliveries INTEGER NOT NULL,
        PRIMARY KEY (stream, grp, seq))""",
]


class SqliteQueue:
    """A :class:`~steward.backends.base.StreamBackend` in one SQLite file.

    Args:
        path: The database file (created on first use).
    """

    def __init__(self, path: str | Path) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{p}"
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(p), timeout=30.0, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        for stmt in _SCHEMA:
            self._conn.execute(stmt)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def ensure_group(self, stream: str, group: str) -> None:
        """Create the group at the start of the stream (idempotent)."""
        with self._tx() as c:
            c.execute("INSERT INTO stream_groups (stream, grp, last_seq) VALUES (?, ?, 0) ON CONFLICT DO NOTHING", (stream, group))

    def add(self, stream: str, fields: dict[str, str]) -> str:
        """Append a message; ids look like Redis ones: ``<ms>-<seq>``."""
        with self._tx() as c:
            row = c.execute("SELECT COALESCE(MAX(seq), 0) FROM stream_messages WHERE stream = ?", (stream,)).fetchone()
            seq = int(row[0]) + 1
            msg_id = f"{int(time.time() * 1000)}-{seq}"
            c.execute(
                "INSERT INTO stream_messages (stream, seq, id, fields) VALUES (?, ?, ?, ?)",
                (stream, seq, msg_id, json.dumps({str(k): str(v) for k, v in fields.items()})),
            )
            return msg_id

    @staticmethod
    def _load(c: sqlite3.Connection, stream: str, seqs: list[int]) -> list[StreamEntry]:
        if not seqs:
            return []
        marks = ",".join("?" * len(seqs))
        rows = c.execute(
            f"SELECT id, fields FROM stream_messages WHERE stream = ? AND seq IN ({marks}) ORDER BY seq", (stream, *seqs)
        ).fetchall()
        return [(str(r[0]), dict(json.loads(r[1]))) for r in rows]

    def read(self, stream: str, group: str, consumer: str, *, count: int = 100, pending: bool = False) -> list[StreamEntry]:
        """Deliver new messages (marking them pending), or re-read this consumer's pending ones."""
        now = time.time()
        with self._tx() as c:
            if pending:
                seqs = [
                    int(r[0])
                    for r in c.execute(
                        "SELECT seq FROM stream_pending WHERE stream = ? AND grp = ? AND consumer = ? ORDER BY seq LIMIT ?",
                        (stream, group, consumer, count),
                    )
                ]
                return self._load(c, stream, seqs)
            row = c.execute("SELECT last_seq FROM stream_groups WHERE stream = ? AND grp = ?", (stream, group)).fetchone()
            if row is None:
                c.execute("INSERT INTO stream_groups (stream, grp, last_seq) VALUES (?, ?, 0)", (stream, group))
                last = 0
            else:
                last = int(row[0])
            seqs = [
                int(r[0])
                for r in c.execute(
                    "SELECT seq FROM stream_messages WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?", (stream, last, count)
                )
            ]
            if not seqs:
                return []
            c.executemany(
                "INSERT INTO stream_pending (stream, grp, seq, consumer, delivered_at, deliveries) VALUES (?, ?, ?, ?, ?, 1)",
                [(stream, group, s, consumer, now) for s in seqs],
            )
            c.execute("UPDATE stream_groups SET last_seq = ? WHERE stream = ? AND grp = ?", (seqs[-1], stream, group))
            return self._load(c, stream, seqs)

    def claim(self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 100) -> list[StreamEntry]:
        """Take over messages pending longer than ``min_idle_ms``."""
        now = time.time()
        with self._tx() as c:
            seqs = [
                int(r[0])
                for r in c.execute(
                    "SELECT seq FROM stream_pending WHERE stream = ? AND grp = ? AND delivered_at <= ? ORDER BY seq LIMIT ?",
                    (stream, group, now - min_idle_ms / 1000.0, count),
                )
            ]
            c.executemany(
                "UPDATE stream_pending SET consumer = ?, delivered_at = ?, deliveries = deliveries + 1 WHERE stream = ? AND grp = ? AND seq = ?",
                [(consumer, now, stream, group, s) for s in seqs],
            )
            return self._load(c, stream, seqs)

    def ack(self, stream: str, group: str, ids: list[str]) -> int:
        """Acknowledge messages (drop them from the pending list)."""
        seqs = [int(i.rsplit("-", 1)[1]) for i in ids if "-" in i]
        if not seqs:
            return 0
        with self._tx() as c:
            n = 0
            for s in seqs:
                n += c.execute("DELETE FROM stream_pending WHERE stream = ? AND grp = ? AND seq = ?", (stream, group, s)).rowcount
            return n

    def pending_count(self, stream: str, group: str) -> int:
        """Messages delivered but not acknowledged."""
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM stream_pending WHERE stream = ? AND grp = ?", (stream, group)).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()
