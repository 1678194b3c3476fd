"""Adaptive micro-batching and the prediction log."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving_helpers import make_workspace

from steward.serving.batching import MicroBatcher
from steward.serving.predlog import PredictionLogger, PredictionRecord

pytestmark = pytest.mark.anyio


def slow_sum(x: np.ndarray) -> np.ndarray:
    time.sleep(0.01)  # a model call long enough for requests to pile up behind it
    return x.sum(axis=1)


async def test_concurrent_requests_are_batched_and_answered_in_order() -> None:
    sizes: list[int] = []
    b = MicroBatcher(slow_sum, max_batch_size=16, max_wait_ms=5, on_batch=sizes.append)
    xs = [np.array([[float(i), 1.0]]) for i in range(64)]
    outs = await asyncio.gather(*(b.submit(x) for x in xs))
    assert [float(o[0]) for o in outs] == [i + 1.0 for i in range(64)]
    assert sum(sizes) == 64 and max(sizes) > 1 and max(sizes) <= 16
    assert b.stats.batches < 64
    await b.aclose()


async def test_lone_request_is_not_delayed() -> None:
    b = MicroBatcher(lambda x: x[:, 0], max_batch_size=64, max_wait_ms=300)
    t0 = time.perf_counter()
    await b.submit(np.ones((1, 2)))
    assert time.perf_counter() - t0 < 0.15  # nothing else is on its way: no waiting for company
    await b.aclose()


async def test_max_wait_is_respected_while_more_requests_are_expected() -> None:
    sizes: list[int] = []
    b = MicroBatcher(lambda x: x[:, 0], max_batch_size=64, max_wait_ms=60, on_batch=sizes.append)
    with b.expect(), b.expect():  # two requests are inside a handler; only one is ever submitted
        t0 = time.perf_counter()
        with b.expect():
            await b.submit(np.ones((1, 2)))
        waited = time.perf_counter() - t0
    assert 0.05 <= waited < 0.5
    assert sizes == [1]
    await b.aclose()


async def test_a_late_companion_joins_the_batch_within_max_wait() -> None:
    sizes: list[int] = []
    b = MicroBatcher(lambda x: x[:, 0], max_batch_size=64, max_wait_ms=200, on_batch=sizes.append)

    async def second() -> np.ndarray:
        with b.expect():
            await asyncio.sleep(0.02)  # e.g. still reading its body
            return await b.submit(np.full((1, 2), 2.0))

    with b.expect():
        task = asyncio.create_task(second())
        await asyncio.sleep(0)
        first = await b.submit(np.ones((1, 2)))
    assert float((await task)[0]) == 2.0 and float(first[0]) == 1.0
    assert sizes == [2]
    await b.aclose()


async def test_close_while_the_collector_holds_a_batch_still_answers_it() -> None:
    # The collector has taken a request off the queue and waits for a companion that is still
    # inside its handler; the queue is empty and nothing is in flight. Closing now (a model
    # swap) must not cancel the collector with that request in hand: it would hang forever.
    b = MicroBatcher(lambda x: x[:, 0] * 3, max_batch_size=64, max_wait_ms=150)
    with b.expect(), b.expect():
        task = asyncio.create_task(b.submit(np.ones((1, 2))))
        await asyncio.sleep(0.02)  # the collector now holds the request and waits for company
        assert b._queue is not None and b._queue.empty() and not b._inflight_batches
        await b.aclose(drain_timeout_s=2.0)
        out = await asyncio.wait_for(task, 2.0)
    assert float(out[0]) == 3.0


async def test_requests_still_unanswered_at_the_close_deadline_fail_instead_of_hanging() -> None:
    gate = threading.Event()

    def stuck(x: np.ndarray) -> np.ndarray:
        gate.wait(5)
        return x[:, 0]

    b = MicroBatcher(stuck, max_batch_size=64, max_wait_ms=200)
    with b.expect(), b.expect():
        held = asyncio.create_task(b.submit(np.ones((1, 2))))
        await asyncio.sleep(0.02)
        await b.aclose(drain_timeout_s=0.05)  # shorter than the collector's wait: it is cancelled holding the request
    with pytest.raises(RuntimeError, match="batcher closed"):
        await asyncio.wait_for(held, 2.0)
    gate.set()


async def test_errors_reach_every_caller_of_the_batch() -> None:
    def boom(x: np.ndarray) -> np.ndarray:
        raise ValueError("bad model")

    b = MicroBatcher(boom, max_batch_size=8, max_wait_ms=1)
    results = await asyncio.gather(*(b.submit(np.ones((1, 1))) for _ in range(4)), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    await b.aclose()


async def test_big_requests_bypass_the_queue() -> None:
    sizes: list[int] = []
    b = MicroBatcher(lambda x: x[:, 0], max_batch_size=4, on_batch=sizes.append)
    out = await b.submit(np.ones((10, 2)))
    assert len(out) == 10 and sizes == [10]
    await b.aclose()


def record(i: int) -> PredictionRecord:
    return PredictionRecord(f"r{i}", time.time(), "m", "1", "champion", {"a": i, "b": None}, i / 100, 1.5)


def test_prediction_log_batches_writes_to_the_lake(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    plog = PredictionLogger(lake=ws.lake, table="logs.predictions", flush_rows=20, flush_interval_s=30)
    plog.start()
    for i in range(50):
        assert plog.log(record(i))
    plog.close()
    frame = ws.lake.read("logs.predictions")
    assert frame.height == 50 and sorted(frame["request_id"].to_list()) == sorted(f"r{i}" for i in range(50))
    assert 1 <= plog.writes <= 4  # batched: a handful of commits, not 50
    assert len(ws.lake.history("logs.predictions")) == plog.writes
    assert set(frame.columns) >= {"request_id", "ts", "model", "version", "variant", "features", "prediction", "latency_ms", "_date"}


def test_prediction_log_never_blocks_and_counts_drops() -> None:
    gate = threading.Event()
    written: list[int] = []
    drops: list[int] = []

    def slow_write(tbl: Any) -> None:
        gate.wait(5)
        written.append(tbl.num_rows)

    plog = PredictionLogger(write=slow_write, queue_size=10, flush_rows=5, flush_interval_s=0.01, on_drop=lambda: drops.append(1))
    plog.start()
    t0 = time.perf_counter()
    accepted = sum(plog.log(record(i)) for i in range(200))
    assert time.perf_counter() - t0 < 0.5  # never waits on the writer
    assert plog.dropped == 200 - accepted == len(drops) and plog.dropped > 150
    gate.set()
    plog.close()
    assert sum(written) == accepted


def test_prediction_log_write_failures_are_counted_not_raised() -> None:
    errors: list[int] = []

    def broken(tbl: Any) -> None:
        raise OSError("disk full")

    plog = PredictionLogger(write=broken, flush_rows=2, flush_interval_s=0.01, on_error=lambda: errors.append(1))
    plog.start()
    for i in range(4):
        plog.log(record(i))
    plog.close()
    assert plog.errors >= 1 and len(errors) == plog.errors and plog.written == 0
