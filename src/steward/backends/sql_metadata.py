"""Metadata store on SQLite (embedded default) or PostgreSQL (scale-out).

One implementation, two DB-API drivers: SQL is written with ``?`` placeholders
and rewritten to ``%s`` for psycopg. A re-entrant lock serialises use of the
single connection, so one store can be shared by threads (the API server's
worker threads, the loop).

PostgreSQL may restart or fail over under a running server, so the connection is
checked before each use outside a transaction: when it is closed, broken, or the server
has sent something unasked (the termination notice a restart leaves, or EOF) it is
replaced first. A connection error during a statement maps to
:class:`~steward.errors.BackendUnavailable` (HTTP 503) and the next use reconnects;
a read (``SELECT``) outside a transaction is retried once on a fresh connection, since
running it twice cannot change anything. Writes are never retried here: the server may
have applied one whose answer was lost.
"""

from __future__ import annotations

import contextlib
import logging
import select
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from steward._extras import optional_import
from steward._primitives import utcnow
from steward.backends.base import Dialect, Row
from steward.backends.health import client_reason, redact_url, unavailable
from steward.backends.migrations import MIGRATIONS
from steward.backends.sqlite_wal import CHECKPOINTER
from steward.errors import BackendUnavailable, MetadataError

__all__ = ["SqlMetadataStore", "open_metadata_store"]

logger = logging.getLogger(__name__)


class SqlMetadataStore:
    """A :class:`~steward.backends.base.MetadataStore` over SQLite or PostgreSQL.

    Args:
        url: ``sqlite:///path/to/file.db`` or ``postgresql://user@host:port/db`` (libpq parameters such as
            ``?connect_timeout=2`` may be added; the default connect timeout is :attr:`CONNECT_TIMEOUT_S`).
    """

    CONNECT_TIMEOUT_S = 5

    # libpq defaults for a server that vanishes without closing the socket (a dead host, a network
    # partition): TCP keepalives notice an idle connection's peer is gone within ~25 s, and
    # tcp_user_timeout fails a statement whose bytes go unacknowledged for 10 s instead of hanging.
    # Each is used only when the URL does not set it.
    TCP_DEFAULTS: ClassVar[dict[str, int]] = {
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 10_000,
    }

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._depth = 0
        self.dialect: Dialect
        # the driver's "server went away" error; () for SQLite, whose file cannot go away
        self._gone: tuple[type[BaseException], ...] = ()
        if url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            self._conn: Any = self._connect_postgres(url)
            import psycopg

            self._gone = (psycopg.OperationalError,)
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

    @classmethod
    def _connect_postgres(cls, url: str) -> Any:
        psycopg = optional_import("psycopg", extra="postgres", needed_for="storage.metadata_url (PostgreSQL metadata)")
        from psycopg.rows import dict_row

        # a timeout in the URL wins; otherwise a black-holed server costs at most CONNECT_TIMEOUT_S
        defaults = {"connect_timeout": cls.CONNECT_TIMEOUT_S, **cls.TCP_DEFAULTS}
        extra = {k: v for k, v in defaults.items() if f"{k}=" not in url}
        try:
            return psycopg.connect(url, autocommit=True, row_factory=dict_row, **extra)
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(
                f"cannot reach PostgreSQL at {redact_url(url)}: {client_reason(exc)}",
                hint="start PostgreSQL or fix storage.metadata_url",
                details={"backend": "metadata", "retry_after_s": 2},
            ) from None

    # -- connection health -------------------------------------------------
    def _checkout(self) -> Any:
        """The connection to use now (the lock is held): replaced first if it is dead, outside a transaction."""
        if self.dialect != "postgresql" or self._depth:
            return self._conn
        conn = self._conn
        if conn.closed or conn.broken or _has_unread_input(conn):
            logger.info("reconnecting to PostgreSQL at %s (the connection was lost)", redact_url(self.url))
            with contextlib.suppress(Exception):
                conn.close()
            self._conn = self._connect_postgres(self.url)
        return self._conn

    def _lost(self, exc: BaseException) -> BackendUnavailable:
        """Close a connection that failed mid-statement (the next use reconnects) and say why."""
        with contextlib.suppress(Exception):
            self._conn.close()
        return unavailable("metadata store (PostgreSQL)", self.url, exc)

    def ping(self) -> None:
        """One round trip (``SELECT 1``); raise :class:`BackendUnavailable` when the server does not answer.

        Statements are short, so a store held by another thread for over 1.5 s is hanging on the server
        (a black-holed connect or query): that counts as unavailable too.
        """
        if not self._lock.acquire(timeout=1.5):
            raise unavailable("metadata store", self.url, "no statement finished within 1.5 s (a connect or query is hanging)")
        try:
            self.fetchall("SELECT 1 AS ok")
        finally:
            self._lock.release()

    # -- SQL ---------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def _run(self, sql: str, params: Sequence[Any], *, rows: bool) -> Any:
        with self._lock:
            # only a read outside a transaction is safe to send twice
            retries = 1 if rows and not self._depth and sql.lstrip()[:6].upper() == "SELECT" else 0
            while True:
                conn = self._checkout()
                try:
                    cur = conn.execute(self._sql(sql), tuple(params))
                    return [dict(r) for r in cur.fetchall()] if rows else int(cur.rowcount or 0)
                except self._gone as exc:
                    lost = self._lost(exc)
                    if retries <= 0:
                        raise lost from exc
                    retries -= 1
                    logger.info("retrying a read on a fresh PostgreSQL connection: %s", lost.message)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the number of affected rows.

        Raises:
            BackendUnavailable: the PostgreSQL server is not reachable (``backend.unavailable``).
        """
        return int(self._run(sql, params, rows=False))

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query and return its rows as dicts.

        Raises:
            BackendUnavailable: the PostgreSQL server is not reachable (``backend.unavailable``).
        """
        out: list[Row] = self._run(sql, params, rows=True)
        return out

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
            conn = self._checkout()
            try:
                conn.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
            except self._gone as exc:
                raise self._lost(exc) from exc
            self._depth = 1
            try:
                yield
            except BaseException:
                try:
                    conn.execute("ROLLBACK")
                except self._gone:
                    # the server is gone and took the transaction with it: nothing to roll back
                    self._lost(RuntimeError("connection lost in a transaction"))
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except self._gone as exc:
                    raise self._lost(exc) from exc
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


def _has_unread_input(conn: Any) -> bool:
    """Whether the server sent something to an idle connection: a restart's termination notice, or EOF.

    An idle autocommit connection is owed nothing, so readable means dead (or, rarely, an
    unasked parameter-status message, for which a reconnect is harmless). One poll with no
    wait: cheap enough for every statement, unlike a ``SELECT 1`` round trip.
    """
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def open_metadata_store(url: str, *, migrate: bool = True) -> SqlMetadataStore:
    """Open a metadata store and bring its schema up to date."""
    store = SqlMetadataStore(url)
    if migrate:
        store.migrate()
    return store
