"""Atomic counters and a TTL cache on SQLite: the embedded default for budgets, rate limits and the LLM cache.

One small database file (``ROOT/kv.db``) separate from the metadata store, so
the gateway's hot path never waits behind long metadata transactions. Atomicity
across threads comes from a lock, across processes from ``BEGIN IMMEDIATE``
(SQLite's single writer), so many processes reserving against one budget never
overspend together.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from steward.backends.base import CounterSpec
from steward.backends.sqlite_wal import CHECKPOINTER, checkpoint_in_background

__all__ = ["SqliteKV"]

logger = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NOT NULL)",
)
_UPSERT = (
    "INSERT INTO counters (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
    "value = CASE WHEN counters.expires_at > ? THEN counters.value + excluded.value ELSE excluded.value END, "
    "expires_at = CASE WHEN counters.expires_at > ? THEN counters.expires_at ELSE excluded.expires_at END"
)
_PURGE_EVERY = 5000


class SqliteKV:
    """A :class:`~steward.backends.base.CounterStore` and :class:`~steward.backends.base.CacheStore` on one SQLite file.

    Args:
        path: The database file (created with its directory if missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        self._conn = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        for stmt in _SCHEMA:
            self._conn.execute(stmt)
        self._ops = 0
        # the gateway reserves on its event loop: checkpoints must not ride on those commits
        self._checkpoint_key: str | None = checkpoint_in_background(self._conn, str(self.path.resolve()))

    # -- counters ------------------------------------------------------------
    def reserve(self, counters: Sequence[CounterSpec]) -> int:
        """Increment every counter if all stay within their limits, atomically; else return the first failing index."""
        now = time.time()
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Increment, then check: one statement per counter; any counter over its cap rolls all back.
                for i, (key, amount, limit, ttl) in enumerate(counters):
                    value = conn.execute(_UPSERT + " RETURNING value", (key, amount, now + ttl, now, now)).fetchone()[0]
                    if limit is not None and value > limit:
                        conn.execute("ROLLBACK")
                        return i
                self._maybe_purge(now)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return -1

    def adjust(self, counters: Sequence[tuple[str, int, float]]) -> None:
        """Add deltas (settling a reservation) without a limit check."""
        if not counters:
            return
        now = time.time()
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for key, delta, ttl in counters:
                    conn.execute(_UPSERT, (key, delta, now + ttl, now, now))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def get(self, key: str) -> int:
        """Current value of a counter (0 when absent or expired)."""
        with self._lock:
            row = self._conn.execute("SELECT value, expires_at FROM counters WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row and row[1] > time.time() else 0

    def _maybe_purge(self, now: float) -> None:
        # Window counters carry their window in the key; expired rows are only garbage.
        self._ops += 1
        if self._ops % _PURGE_EVERY == 0:
            self._conn.execute("DELETE FROM counters WHERE expires_at < ?", (now,))
            self._conn.execute("DELETE FROM cache WHERE expires_at < ?", (now,))

    # -- cache ---------------------------------------------------------------
    def cache_get(self, key: str) -> bytes | None:
        """The cached value, or None when absent or expired."""
        with self._lock:
            row = self._conn.execute("SELECT value, expires_at FROM cache WHERE key = ?", (key,)).fetchone()
        if row is None or row[1] <= time.time():
            return None
        return bytes(row[0])

    def cache_set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store ``value`` for ``ttl_s`` seconds."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO cache (key, value, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                (key, value, time.time() + ttl_s),
            )

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
        if self._checkpoint_key is not None:
            key, self._checkpoint_key = self._checkpoint_key, None
            CHECKPOINTER.remove(key)
