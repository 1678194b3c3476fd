"""WAL checkpoints of the embedded SQLite stores happen in a background thread, not in the writer's commit."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from steward.backends.kv_sqlite import SqliteKV
from steward.backends.sql_metadata import open_metadata_store
from steward.backends.sqlite_wal import CHECKPOINTER


def _wait_for(predicate: object, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_kv_writes_stay_in_the_wal_until_the_background_checkpoint(tmp_path: Path) -> None:
    kv = SqliteKV(tmp_path / "kv.db")
    assert kv._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # commits never checkpoint
    db = tmp_path / "kv.db"
    start = db.stat().st_size
    blob = b"x" * 4096
    for i in range(600):  # ~2.4 MB: past the 1,000-page automatic threshold it would have checkpointed inline
        kv.cache_set(f"k{i}", blob, 3600)
    # the pages reach the database file only through the checkpointer thread
    assert _wait_for(lambda: db.stat().st_size > start + 2_000_000)
    assert CHECKPOINTER.passes > 0
    # every value is still there and readable from another connection
    other = sqlite3.connect(str(db))
    assert other.execute("SELECT count(*) FROM cache").fetchone()[0] == 600
    other.close()
    kv.close()
    assert str(db.resolve()) not in CHECKPOINTER._refs


def test_metadata_store_registers_and_unregisters(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    a = open_metadata_store(f"sqlite:///{path}")
    b = open_metadata_store(f"sqlite:///{path}")
    key = str(path.resolve())
    assert CHECKPOINTER._refs[key] == 2
    a.close()
    assert CHECKPOINTER._refs[key] == 1
    b.close()
    assert key not in CHECKPOINTER._refs
