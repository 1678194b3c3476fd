"""The metadata store, on embedded SQLite and on the real PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from steward.backends.base import MetadataStore
from steward.backends.migrations import MIGRATIONS
from steward.backends.sql_metadata import SqlMetadataStore, open_metadata_store
from steward.errors import BackendUnavailable, MetadataError


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_migrations_apply_in_order_once(store_url: str) -> None:
    store = SqlMetadataStore(store_url)
    applied = store.migrate()
    assert applied == [v for v, _, _ in MIGRATIONS]
    assert store.migrate() == []
    assert store.schema_version() == MIGRATIONS[-1][0]
    assert isinstance(store, MetadataStore)
    store.close()


def test_transaction_rolls_back_on_error(store_url: str) -> None:
    store = open_metadata_store(store_url)
    with pytest.raises(RuntimeError), store.transaction():
        store.execute(
            "INSERT INTO pipeline_runs (run_id, kind, status, started_at) VALUES (?, ?, ?, ?)",
            ("r1", "pipeline", "running", "t"),
        )
        raise RuntimeError("boom")
    assert store.fetchone("SELECT run_id FROM pipeline_runs WHERE run_id = ?", ("r1",)) is None
    with store.transaction():
        store.execute(
            "INSERT INTO pipeline_runs (run_id, kind, status, started_at) VALUES (?, ?, ?, ?)",
            ("r2", "pipeline", "running", "t"),
        )
    row = store.fetchone("SELECT run_id, status FROM pipeline_runs WHERE run_id = ?", ("r2",))
    assert row == {"run_id": "r2", "status": "running"}
    store.close()


def test_locks_exclude_other_owners_and_expire(store_url: str) -> None:
    store = open_metadata_store(store_url)
    assert store.try_lock("loop:m", "a", ttl_seconds=60)
    assert not store.try_lock("loop:m", "b", ttl_seconds=60)
    assert store.try_lock("loop:m", "a", ttl_seconds=60)  # re-entrant for its owner
    store.release_lock("loop:m", "b")  # not the owner: no effect
    assert not store.try_lock("loop:m", "b", ttl_seconds=60)
    store.release_lock("loop:m", "a")
    assert store.try_lock("loop:m", "b", ttl_seconds=0.0001)
    import time

    time.sleep(0.01)
    assert store.try_lock("loop:m", "c", ttl_seconds=60)  # b's lock expired
    store.close()


def _contend(url: str, owner: str, q: mp.Queue[tuple[str, bool]]) -> None:
    s = SqlMetadataStore(url)
    q.put((owner, s.try_lock("exclusive", owner, ttl_seconds=60)))
    s.close()


def test_lock_is_exclusive_across_processes(store_url: str) -> None:
    open_metadata_store(store_url).close()
    ctx = mp.get_context("spawn")
    q: mp.Queue[tuple[str, bool]] = ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(store_url, f"p{i}", q)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = [q.get(timeout=5) for _ in procs]
    assert sum(1 for _, won in results if won) == 1


def test_bad_url_and_unreachable_server() -> None:
    with pytest.raises(MetadataError, match="unsupported"):
        SqlMetadataStore("mysql://nope")
    with pytest.raises(BackendUnavailable):
        SqlMetadataStore("postgresql://postgres@127.0.0.1:1/none")
