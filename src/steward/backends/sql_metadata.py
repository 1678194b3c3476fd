"""Metadata store on SQLite (embedded default) or PostgreSQL (scale-out).

One implementation, two DB-API drivers: SQL is written with ``?`` placeholders
and rewritten to ``%s`` for psycopg. A re-entrant lock serialises use of the
single connection, so one store can be shared by threads (the API server's
worker threads, the loop).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from steward._extras import optional_import
from steward._primitives import utcnow
from steward.backends.base import Dialect, Row
from steward.backends.migrations import MIGRATIONS
from steward.backends.sqlite_wal import CHECKPOINTER
from steward.errors import BackendUnavailable, MetadataError

__all__ = ["SqlMetadataStore", "open_metadata_store"]

logger = logging.getLogger(__name__)


class SqlMetadataStore:
    """A :class:`~steward.backends.base.MetadataStore` over SQLite or PostgreSQL.

    Args:
        url: ``sqlite:///path/to/file.db`` or ``postgresql://user@host:port/db``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._depth = 0
        self.dialect: Dialect
        if url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            self._conn: Any = self._connect_postgres(url)
        elif url.startswith("sqlite:///") or url == "sqlite://":
            self.dialect = "sqlite"
            path = url[len("sqlite:///") :] if url != "sqlite://" else ":memory:"
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a
            # transaction() block is exactly one SQLite transaction.
            conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._checkpoint_path: str | None = None
            if path != ":memory:":
                # The gateway reserves budgets on its event loop; with SQLite's automatic checkpoint the
                # commit that crosses 1,000 WAL pages also copies them back and fsyncs, stalling the
                # loop for 100-200 ms every few seconds at 500 rps. Checkpoint from a background
                # thread instead (passive: it never blocks a writer).
                conn.execute("PRAGMA wal_autocheckpoint=0")  # see steward.backends.sqlite_wal
                self._checkpoint_path = str(Path(path).resolve())
                CHECKPOINTER.add(self._checkpoint_path)
            self._conn = conn
        else:
            raise MetadataError(
                f"unsupported metadata URL {url!r}",
                code="metadata.url",
                hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DB in storage.metadata_url",
            )

    @staticmethod
    def _connect_postgres(url: str) -> Any:
        psycopg = optional_import("psycopg", extra="postgres", needed_for="storage.metadata_url (PostgreSQL metadata)")
        from psycopg.rows import dict_row

        try:
            return psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=5)
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(
                f"cannot reach PostgreSQL at {url}: {str(exc).strip().splitlines()[0]}",
                hint="start PostgreSQL or fix storage.metadata_url",
            ) from None

    # -- SQL ---------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the number of affected rows."""
        with self._lock:
            cur = self._conn.execute(self._sql(sql), tuple(params))
            return int(cur.rowcount or 0)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query and return its rows as dicts."""
        with self._lock:
            cur = self._conn.execute(self._sql(sql), tuple(params))
            return [dict(r) for r in cur.fetchall()]

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Run a query and return its first row, or None."""
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Statements inside commit together; nested blocks join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth = 0

    # -- migrations --------------------------------------------------------
    def schema_version(self) -> int:
        """The highest applied migration version (0 for an empty store)."""
        self.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        row = self.fetchone("SELECT MAX(version) AS v FROM schema_migrations")
        return int(row["v"]) if row and row["v"] is not None else 0

    def migrate(self) -> list[int]:
        """Apply pending migrations in order, each in its own transaction."""
        applied: list[int] = []
        with self._lock:
            current = self.schema_version()
            for version, name, statements in MIGRATIONS:
                if version <= current:
                    continue
                with self.transaction():
                    # re-check inside the transaction: another process may have won
                    row = self.fetchone("SELECT version FROM schema_migrations WHERE version = ?", (version,))
                    if row:
                        continue
                    for stmt in statements:
                        self.execute(stmt)
                    self.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                        (version, name, utcnow()),
                    )
                applied.append(version)
                logger.info("applied metadata migration %s (%s)", version, name)
        return applied

    # -- locks -------------------------------------------------------------
    def try_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take a named lock; False if another owner holds an unexpired one."""
        now = time.time()
        with self.transaction():
            self.execute("DELETE FROM locks WHERE name = ? AND expires_at < ?", (name, now))
            self.execute(
                "INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (name, owner, now + ttl_seconds),
            )
            row = self.fetchone("SELECT owner FROM locks WHERE name = ?", (name,))
            if row and row["owner"] == owner:
                # re-entrant for the same owner: extend
                self.execute("UPDATE locks SET expires_at = ? WHERE name = ?", (now + ttl_seconds, name))
                return True
            return False

    def release_lock(self, name: str, owner: str) -> None:
        """Release ``name`` if ``owner`` holds it."""
        self.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
        path = getattr(self, "_checkpoint_path", None)
        if path is not None:
            self._checkpoint_path = None
            CHECKPOINTER.remove(path)


def open_metadata_store(url: str, *, migrate: bool = True) -> SqlMetadataStore:
    """Open a metadata store and bring its schema up to date."""
    store = SqlMetadataStore(url)
    if migrate:
        store.migrate()
    return store
