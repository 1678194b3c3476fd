"""Stream sources: at-least-once delivery, idempotent landing, the same contract gate to silver."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_helpers import assert_balanced

from steward.backends.base import StreamBackend, StreamEntry
from steward.backends.factory import open_stream
from steward.backends.sqlite_queue import SqliteQueue
from steward.data.pipeline import run_pipeline
from steward.data.streams import consume_stream, publish
from steward.spec import load_spec
from steward.workspace import Workspace

CONTRACT = """\
name: clicks
version: 2
key: [id]
event_time: ts
columns:
  id: {type: int64}
  ts: {type: datetime}
  v: {type: float64, min: 0}
"""


def _project(tmp_path: Path, stream: str, stream_url: str | None) -> Workspace:
    (tmp_path / "contracts").mkdir(exist_ok=True)
    (tmp_path / "contracts" / "clicks.yaml").write_text(CONTRACT)
    storage = f"storage:\n  stream_url: {stream_url}\n" if stream_url else ""
    (tmp_path / "steward.yaml").write_text(
        f"project: s\n{storage}sources:\n  clicks:\n    kind: redis_stream\n    stream: {stream}\n    group: g\n    contract: clicks\n"
        "contracts:\n  clicks: contracts/clicks.yaml\n"
    )
    return Workspace(load_spec(tmp_path))


def _msg(i: int, day: str = "2024-01-02", v: object = 1.0) -> dict[str, object]:
    return {"id": i, "ts": f"{day}T10:00:00Z", "v": v}


class _DiesBeforeAck:
    """A backend whose consumer process 'dies' between its Delta commit and XACK."""

    def __init__(self, inner: StreamBackend) -> None:
        self.inner = inner
        self.url = inner.url

    def ensure_group(self, stream: str, group: str) -> None:
        self.inner.ensure_group(stream, group)

    def add(self, stream: str, fields: dict[str, str]) -> str:
        return self.inner.add(stream, fields)

    def read(self, stream: str, group: str, consumer: str, *, count: int = 100, pending: bool = False) -> list[StreamEntry]:
        return self.inner.read(stream, group, consumer, count=count, pending=pending)

    def claim(self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 100) -> list[StreamEntry]:
        return self.inner.claim(stream, group, consumer, min_idle_ms=min_idle_ms, count=count)

    def ack(self, stream: str, group: str, ids: list[str]) -> int:
        raise ConnectionError("consumer died before XACK")

    def pending_count(self, stream: str, group: str) -> int:
        return self.inner.pending_count(stream, group)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def redis_ws(tmp_path: Path, redis_url: str, unique: str) -> Iterator[Workspace]:
    import redis

    key = f"steward-test-{unique}"
    ws = _project(tmp_path, key, redis_url)
    yield ws
    redis.Redis.from_url(redis_url).delete(key)


def test_sqlite_queue_has_consumer_group_semantics(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "q.db")
    assert isinstance(q, StreamBackend)
    q.ensure_group("s", "g")
    ids = [q.add("s", {"n": str(i)}) for i in range(5)]
    first = q.read("s", "g", "a", count=3)
    assert [i for i, _ in first] == ids[:3] and first[0][1] == {"n": "0"}
    assert q.pending_count("s", "g") == 3
    assert q.read("s", "g", "a", pending=True) == first  # a restarted consumer sees its own pending
    assert q.read("s", "g", "b", pending=True) == []
    assert q.ack("s", "g", ids[:1]) == 1
    assert q.ack("s", "g", ids[:1]) == 0
    assert q.claim("s", "g", "b", min_idle_ms=60_000) == []  # not idle long enough
    claimed = q.claim("s", "g", "b", min_idle_ms=0)
    assert [i for i, _ in claimed] == ids[1:3]
    assert q.read("s", "g", "b", pending=True) == claimed
    assert [i for i, _ in q.read("s", "g", "b")] == ids[3:]
    q.ensure_group("s", "g2")  # a second group reads everything from the start
    assert len(q.read("s", "g2", "x", count=10)) == 5
    q.close()


def test_embedded_queue_feeds_silver_through_the_contract(tmp_path: Path) -> None:
    ws = _project(tmp_path, "clicks", None)
    assert isinstance(open_stream(ws.spec), SqliteQueue)
    publish(ws, "clicks", [_msg(1), _msg(2, v=-1), _msg(3), _msg(3, v=5), _msg(4, v="x")])
    rep = run_pipeline(ws)
    t = assert_balanced(rep)
    assert (t.rows_read, t.rows_silver, t.rows_quarantined, t.rows_duplicate) == (5, 2, 2, 1)
    st = rep.sources["clicks"].stream
    assert st is not None and (st.delivered, st.landed, st.redelivered) == (5, 5, 0)
    s = ws.lake.read("silver.clicks").sort("id")
    assert s["id"].to_list() == [1, 3] and s["v"].to_list() == [1.0, 1.0]
    b = ws.lake.read("bronze.clicks")
    assert set(b["_source_file"]) == {"stream:clicks"} and b["_message_id"].n_unique() == 5
    q = ws.lake.read("quarantine.clicks")
    assert set(q["rule"]) == {"min", "type"} and set(q["contract_version"]) == {"2"}
    # nothing new: no commit
    versions = rep.versions
    assert run_pipeline(ws).batches == [] and run_pipeline(ws).versions == versions


def test_redis_consumer_dies_before_ack_and_redelivery_does_not_duplicate(redis_ws: Workspace) -> None:
    ws = redis_ws
    spec = ws.spec.source("clicks")
    assert spec.stream is not None
    backend = open_stream(ws.spec)
    try:
        publish(ws, "clicks", [_msg(1), _msg(2), _msg(2, v=3), _msg(3, v=-1), _msg(4, day="2024-01-01")], backend=backend)
        with pytest.raises(ConnectionError):
            consume_stream(ws, "clicks", backend=_DiesBeforeAck(backend), consumer="a")
        assert ws.lake.read("bronze.clicks").height == 5  # landed, then died before XACK
        assert backend.pending_count(spec.stream, "g") == 5  # nothing was acked

        # another consumer claims the dead one's messages (XAUTOCLAIM): already landed, so dropped
        st = consume_stream(ws, "clicks", backend=backend, consumer="b", claim_idle_ms=0)
        assert (st.delivered, st.landed, st.redelivered, st.acked) == (5, 0, 5, 5)
        assert backend.pending_count(spec.stream, "g") == 0
        bronze = ws.lake.read("bronze.clicks")
        assert bronze.height == 5 and bronze["_message_id"].n_unique() == 5

        publish(ws, "clicks", [_msg(5), _msg(1, day="2024-01-03")], backend=backend)
        rep = run_pipeline(ws, stream_backend=backend, stream_consumer="b")
        t = assert_balanced(rep)
        assert (t.rows_read, t.rows_silver, t.rows_quarantined, t.rows_duplicate) == (7, 4, 1, 2)
        silver = ws.lake.read("silver.clicks").sort("id")
        assert silver["id"].to_list() == [1, 2, 4, 5]
        assert silver.filter(silver["id"] == 1)["_date"].item() == "2024-01-02"
        assert ws.lake.read("bronze.clicks").height == 7
    finally:
        backend.close()


def test_redis_consumer_process_killed_before_ack_resumes_its_pending(redis_ws: Workspace, tmp_path: Path) -> None:
    ws = redis_ws
    spec = ws.spec.source("clicks")
    assert spec.stream is not None
    publish(ws, "clicks", [_msg(i) for i in range(1, 4)])
    code = "import sys; from steward.workspace import open_workspace; from steward.data import consume_stream; consume_stream(open_workspace(sys.argv[1]), 'clicks')"
    env = {**os.environ, "STEWARD_FAULT": "before_ack"}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    backend = open_stream(ws.spec)
    try:
        assert backend.pending_count(spec.stream, "g") == 3
        assert ws.lake.read("bronze.clicks").height == 3
        # the restarted consumer (same name) re-reads its own pending entries first
        t0 = time.monotonic()
        rep = run_pipeline(ws)
        assert time.monotonic() - t0 < 60
        st = rep.sources["clicks"].stream
        assert st is not None and (st.delivered, st.landed, st.redelivered) == (3, 0, 3)
        assert backend.pending_count(spec.stream, "g") == 0
        t = assert_balanced(rep)
        assert (t.rows_read, t.rows_silver) == (3, 3)
        assert ws.lake.read("silver.clicks")["id"].n_unique() == 3
    finally:
        backend.close()
