"""WAL checkpoints of SQLite files in one background thread, so no caller's commit pays for them.

With SQLite's automatic checkpoint, the commit that pushes the write-ahead log past 1,000
pages also copies the pages back into the database and fsyncs it. The gateway reserves
budgets and the server logs metadata from the event loop, so that commit stalled every
request in flight for 100-200 ms every few seconds at 500 requests/s. Files registered
here run with ``PRAGMA wal_autocheckpoint=0`` and are checkpointed once a second by
:data:`CHECKPOINTER` (passive checkpoints: they never wait for, or block, a writer).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

__all__ = ["CHECKPOINTER", "Checkpointer", "checkpoint_in_background"]

logger = logging.getLogger(__name__)


class Checkpointer:
    """One daemon thread that checkpoints the WAL of every open SQLite metadata file, off the callers' threads.

    Files are reference-counted by open stores; each gets its own connection here. A passive
    checkpoint copies what no reader still needs and never waits for (or blocks) a writer.
    """

    INTERVAL_S = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: dict[str, int] = {}
        self._conns: dict[str, sqlite3.Connection] = {}
        self._thread: threading.Thread | None = None
        self.passes = 0

    def add(self, path: str) -> None:
        with self._lock:
            self._refs[path] = self._refs.get(path, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="steward-sqlite-checkpoint", daemon=True)
                self._thread.start()

    def remove(self, path: str) -> None:
        with self._lock:
            n = self._refs.get(path, 0) - 1
            if n > 0:
                self._refs[path] = n
                return
            self._refs.pop(path, None)
            conn = self._conns.pop(path, None)
        if conn is not None:
            self.checkpoint(conn, path)  # leave a short WAL behind
            conn.close()

    @staticmethod
    def checkpoint(conn: sqlite3.Connection, path: str) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # busy or gone: the next pass tries again
            logger.debug("checkpoint of %s skipped: %s", path, exc)

    def _run(self) -> None:
        while True:
            time.sleep(self.INTERVAL_S)
            with self._lock:
                paths = list(self._refs)
            for path in paths:
                with self._lock:
                    if path not in self._refs:
                        continue
                    conn = self._conns.get(path)
                    if conn is None:
                        try:
                            conn = sqlite3.connect(path, timeout=1.0, check_same_thread=False, isolation_level=None)
                        except sqlite3.Error:
                            continue
                        self._conns[path] = conn
                    self.checkpoint(conn, path)
            self.passes += 1


CHECKPOINTER = Checkpointer()


def checkpoint_in_background(conn: sqlite3.Connection, path: str) -> str:
    """Turn off ``conn``'s automatic checkpoint and register ``path`` with :data:`CHECKPOINTER`; returns the key to remove."""
    conn.execute("PRAGMA wal_autocheckpoint=0")
    key = str(path)
    CHECKPOINTER.add(key)
    return key
