"""The embedded online feature store: one SQLite file under the state root.

Each table is replaced inside one transaction, so readers (WAL mode) see either
the old table or the new one. A read of any number of entities across tables
is one ``SELECT`` (chunked only beyond SQLite's bound-parameter limit).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["SqliteOnlineStore"]

logger = logging.getLogger(__name__)

_MAX_PARAMS = 30000  # below SQLITE_MAX_VARIABLE_NUMBER (32766 since SQLite 3.32)


class SqliteOnlineStore:
    """An :class:`~steward.backends.base.OnlineStore` in a SQLite file.

    Args:
        path: Database file (created on first use).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS online_features (namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
            "PRIMARY KEY (namespace, key)) WITHOUT ROWID"
        )

    def replace(self, namespace: str, items: Mapping[str, str]) -> int:
        """Delete the table's rows and insert the new ones in one transaction."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("DELETE FROM online_features WHERE namespace = ?", (namespace,))
                self._conn.executemany(
                    "INSERT INTO online_features (namespace, key, value) VALUES (?, ?, ?)", ((namespace, k, v) for k, v in items.items())
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return len(items)

    def read(self, requests: Mapping[str, Sequence[str]]) -> dict[str, list[str | None]]:
        """One ``SELECT ... WHERE (namespace, key) IN (...)`` for every requested key."""
        pairs = [(n, k) for n, keys in requests.items() for k in dict.fromkeys(keys)]
        found: dict[tuple[str, str], str] = {}
        with self._lock:
            for i in range(0, len(pairs), _MAX_PARAMS // 2):
                chunk = pairs[i : i + _MAX_PARAMS // 2]
                placeholders = ",".join("(?, ?)" for _ in chunk)
                params = [p for pair in chunk for p in pair]
                sql = f"SELECT namespace, key, value FROM online_features WHERE (namespace, key) IN (VALUES {placeholders})"
                for ns, key, value in self._conn.execute(sql, params):
                    found[(ns, key)] = value
        return {n: [found.get((n, k)) for k in keys] for n, keys in requests.items()}

    def count(self, namespace: str) -> int:
        """Number of entities stored for a table."""
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM online_features WHERE namespace = ?", (namespace,)).fetchone()
        return int(row[0])

    def drop(self, namespace: str) -> None:
        """Delete a whole table."""
        with self._lock:
            self._conn.execute("DELETE FROM online_features WHERE namespace = ?", (namespace,))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
