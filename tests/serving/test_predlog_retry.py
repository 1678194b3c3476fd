"""The prediction log keeps a batch whose write failed and writes it later: nothing lost, nothing twice."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from steward.errors import BackendUnavailable
from steward.serving.predlog import PredictionLogger, PredictionRecord


def record(i: int) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"r{i}",
        ts=1_700_000_000 + i,
        model="m",
        version="1",
        variant="champion",
        features={"x": i},
        prediction=float(i),
        latency_ms=1.0,
    )


def test_a_failed_write_is_retried_in_order_without_loss_or_duplicates(caplog: pytest.LogCaptureFixture) -> None:
    written: list[str] = []
    fail = {"left": 3}

    def flaky(tbl: Any) -> None:
        if fail["left"]:
            fail["left"] -= 1
            raise BackendUnavailable("metadata store (PostgreSQL) at postgresql://x is unavailable: restarting")
        written.extend(tbl.column("request_id").to_pylist())

    plog = PredictionLogger(write=flaky, flush_rows=4, flush_interval_s=0.01)
    plog.start()
    with caplog.at_level(logging.WARNING, logger="steward.serving.predlog"):
        for i in range(10):
            plog.log(record(i))
        deadline = time.monotonic() + 15
        while len(written) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
    plog.close()
    assert written == [f"r{i}" for i in range(10)]
    assert plog.errors == 3 and plog.written == 10 and plog.depth == 0
    # an outage is a warning naming the backend, not a traceback per attempt
    warnings = [r for r in caplog.records if "kept, retrying" in r.getMessage()]
    assert len(warnings) == 3 and all(r.exc_info is None for r in warnings)
