"""Gateway usage rows survive a metadata store outage: kept while it is down, written once when it is back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import OwnPostgres

from steward.backends.sql_metadata import open_metadata_store
from steward.llm.gateway import UsageRecorder


@pytest.fixture
def own_pg() -> Iterator[OwnPostgres]:
    server = OwnPostgres()
    try:
        yield server
    finally:
        server.close()


def _row(i: int) -> dict[str, object]:
    return {"request_id": f"u{i}", "key_name": "k", "model": "local:x", "prompt_tokens": 3, "completion_tokens": 4}


def test_usage_rows_written_while_postgres_restarts_land_exactly_once(own_pg: OwnPostgres, tmp_path: Path) -> None:
    store = open_metadata_store(own_pg.url)
    rec = UsageRecorder(store, interval_s=3600)  # flushed by hand below
    rec.record(_row(0))
    assert rec.flush() == 1
    own_pg.stop()
    for i in range(1, 6):
        rec.record(_row(i))
    assert rec.flush() == 0  # down: nothing written, nothing dropped
    own_pg.start()
    rec.record(_row(6))
    assert rec.flush() == 6
    ids = [r["request_id"] for r in store.fetchall("SELECT request_id FROM llm_usage ORDER BY request_id")]
    assert ids == [f"u{i}" for i in range(7)]
    rec.close()
    store.close()
