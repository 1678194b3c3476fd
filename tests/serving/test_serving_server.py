"""The model server's own behaviour around rollouts and swaps: shadow encoding, swaps under lookups, the
challenger kept off the event loop, rollout evaluation without polling, failed requests in the prediction log."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from serving_helpers import CARRIERS, FEATURES, FakeRegistry, FakeRuntime, make_workspace, row, serving_spec

from steward import ops
from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.errors import StewardError, ValidationFailed
from steward.monitoring import evaluate_slo, read_log, sli_events
from steward.serving.predlog import PredictionLogger, PredictionRecord, records_to_arrow
from steward.serving.rollout import RolloutState
from steward.serving.runtime import InputSchema
from steward.serving.server import ModelServer
from steward.spec import SloSpec

pytestmark = pytest.mark.anyio


async def wait_for(cond: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll ``cond`` with real yields to the loop until it holds."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def start_rollout(server: ModelServer) -> RolloutState:
    """Start m's rollout as every edge does: through steward.ops, applied by the running server before it returns."""
    return await asyncio.to_thread(ops.start_rollout, server.ws, "m", actor="test", server=server.live)


async def started(server: ModelServer) -> ModelServer:
    await server.start()
    await wait_for(lambda: server.ready, what="the server to load its models")
    return server


def metric(child: Any) -> float:
    value: float = child._value.get()
    return value


class CarrierRuntime(FakeRuntime):
    """Scores 0.9 for carrier EV and 0.1 otherwise, reading the carrier through its *own* vocabulary.

    Two of these with permuted vocabularies (or other feature orders) are the same model, as two
    retrains of one model are: categorical codes are relearned at every training run.
    """

    def __init__(self, version: str, vocab: list[str], features: list[str] | None = None) -> None:
        super().__init__("m", version)
        self.vocab = vocab
        self.schema = InputSchema.from_encoding({"features": features or FEATURES, "categorical": {"carrier": vocab}})
        self.feature_names = self.schema.names
        self.seen: list[np.ndarray] = []

    def predict(self, frame: Any) -> np.ndarray:
        x = np.asarray(frame)
        if np.isnan(x).all():  # the warm-up call
            return np.full(len(x), 0.1)
        self.seen.append(x.copy())
        col = x[:, self.feature_names.index("carrier")]
        return np.array([0.9 if self.vocab[int(c)] == "EV" else 0.1 for c in col])


async def test_shadow_challenger_encodes_rows_with_its_own_vocabulary_and_features(tmp_path: Path) -> None:
    champion = CarrierRuntime("1", CARRIERS)
    # retrained: the carriers in another order, a feature dropped, the columns in another order
    challenger = CarrierRuntime("2", list(reversed(CARRIERS)), ["carrier", "dep_hour", "wind_speed"])
    reg = FakeRegistry()
    reg.add("m", "1", lambda: champion, "champion")
    reg.add("m", "2", lambda: challenger, "challenger")
    spec = serving_spec(models={"m": {"rollout": {"mode": "shadow", "auto": False}}}, poll_interval_s=0, prediction_log={"enabled": False})
    server = await started(ModelServer(make_workspace(tmp_path / "p"), spec, loader=reg.load, resolver=reg.resolve))
    try:
        await start_rollout(server)
        answers = [await server.predict("m", [row(i)]) for i in range(8)]
        assert [a.predictions[0] for a in answers] == [0.9 if row(i)["carrier"] == "EV" else 0.1 for i in range(8)]
        compared = server.metrics.shadow_compared.labels("m")
        errors = server.metrics.shadow_errors.labels("m", "error")
        await wait_for(lambda: metric(compared) + metric(errors) >= 8, what="8 shadow copies")
        assert metric(errors) == 0  # the champion's 4-column matrix never reaches the 3-column challenger
        assert metric(compared) == 8
        assert metric(server.metrics.shadow_disagreements.labels("m")) == 0  # the same model: no disagreement
        got = np.concatenate(challenger.seen)
        assert got.shape[1] == 3
        assert got[:, 0].tolist() == [float(list(reversed(CARRIERS)).index(row(i)["carrier"])) for i in range(8)]
        assert server.variant_stats("m")["challenger"]["disagreement"] == 0.0
    finally:
        await server.stop()


KEYS = ApiKeys({"op": ("op", "operator")})


async def test_a_swap_during_the_online_lookup_is_routed_again_not_failed() -> None:
    reg = FakeRegistry()
    reg.add("m", "1", lambda: FakeRuntime("m", "1", offset=0.1), "champion")
    reg.add("m", "2", lambda: FakeRuntime("m", "2", offset=0.5))
    entered, release = threading.Event(), threading.Event()

    def online(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        entered.set()
        release.wait(10)  # a slow feature store: the swap happens meanwhile
        return [{"tailnum": r["tailnum"], **row(3)} for r in rows]

    spec = serving_spec(models={"m": {"entity_keys": ["tailnum"]}}, poll_interval_s=0, prediction_log={"enabled": False})
    server = ModelServer(None, spec, loader=reg.load, resolver=reg.resolve, online_features=online)
    app = create_app(None, model_server=server, api_keys=KEYS, serving_spec=spec)
    async with app.router.lifespan_context(app):
        await wait_for(lambda: server.ready, what="ready")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            pending = asyncio.create_task(
                client.post("/v1/models/m/predict", json={"row": {"tailnum": "N1"}}, headers={"Authorization": "Bearer op"})
            )
            await wait_for(entered.is_set, what="the online lookup")
            old = server.models["m"].champion
            assert old is not None
            reg.aliases[("m", "champion")] = "2"
            report = await server.reload("m")
            assert report["changes"]["champion"] == {"from": "1", "to": "2"}
            await wait_for(lambda: old.batcher._closed, what="the old version to retire")
            release.set()
            r = await pending
        assert r.status_code == 200, r.text
        assert r.json()["version"] == "2"
        assert metric(server.metrics.requests.labels("m", "1", "champion", "error")) == 0


class SometimesSlow(FakeRuntime):
    """Answers in microseconds, except for rows with ``dep_hour == 13``, which take 300 ms."""

    def predict(self, frame: Any) -> np.ndarray:
        x = np.asarray(frame)
        if (np.nan_to_num(x[:, 0]) == 13).any():
            time.sleep(0.3)
        return self.offset + 0.001 * np.nan_to_num(x[:, 0])


async def test_a_sometimes_slow_shadow_challenger_never_blocks_the_event_loop(tmp_path: Path) -> None:
    reg = FakeRegistry()
    reg.add("m", "1", lambda: FakeRuntime("m", "1"), "champion")
    reg.add("m", "2", lambda: SometimesSlow("m", "2"), "challenger")
    spec = serving_spec(
        models={"m": {"rollout": {"mode": "shadow", "auto": False}}},
        poll_interval_s=0,
        shadow={"timeout_ms": 50},
        prediction_log={"enabled": False},
    )
    server = await started(ModelServer(make_workspace(tmp_path / "p"), spec, loader=reg.load, resolver=reg.resolve))
    lag = 0.0
    stop = asyncio.Event()

    async def heartbeat() -> None:
        # how late the loop wakes a 5 ms sleeper: while anything runs inline, no response can be written either
        nonlocal lag
        while not stop.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            lag = max(lag, time.perf_counter() - t0 - 0.005)

    try:
        await start_rollout(server)
        beat = asyncio.create_task(heartbeat())
        n = 24  # dep_hour = 8 + i % 12: rows 5 and 17 are the slow ones
        for i in range(n):
            await server.predict("m", [row(i)])
            await asyncio.sleep(0.01)
        compared = server.metrics.shadow_compared.labels("m")
        timeouts = server.metrics.shadow_errors.labels("m", "timeout")
        await wait_for(lambda: metric(compared) + metric(timeouts) >= n, what="every shadow copy to be answered or time out")
        stop.set()
        await beat
        assert metric(timeouts) >= 1  # the slow copies ran in the worker thread, where the timeout can fire
        slot = server.models["m"].challenger
        assert slot is not None and slot.batcher.inline_calls == 0
        assert lag < 0.2, f"the event loop stalled for {lag * 1000:.0f} ms"  # a 300 ms call inline would stall it that long
    finally:
        stop.set()
        await server.stop()


async def test_rollouts_are_evaluated_without_registry_polling(tmp_path: Path) -> None:
    reg = FakeRegistry()
    reg.add("m", "1", lambda: FakeRuntime("m", "1"), "champion")
    reg.add("m", "2", lambda: FakeRuntime("m", "2", fail=True), "challenger")
    policy = {"mode": "canary", "steps": [50, 100], "step_window_s": 1, "slo": {"max_error_rate": 0.05, "min_requests": 10}}
    spec = serving_spec(models={"m": {"rollout": policy}}, poll_interval_s=0, prediction_log={"enabled": False})
    server = await started(ModelServer(make_workspace(tmp_path / "p"), spec, loader=reg.load, resolver=reg.resolve))
    try:
        st = await start_rollout(server)
        failed = 0
        for i in range(40):
            try:
                await server.predict("m", [row(i)], key=f"k{i}")
            except StewardError:
                failed += 1
            await asyncio.sleep(0.001)
        assert failed > 0
        m = server.models["m"]
        # nobody calls tick or refresh here: the server's own evaluation rolls the breach back
        await wait_for(lambda: m.rollout is None, timeout_s=10, what="the automatic rollback")
        ctl = server.controller
        assert ctl is not None
        latest = await asyncio.to_thread(ctl.latest, "m")
        assert latest is not None and latest.rollout_id == st.rollout_id and latest.state == "rolled_back"
        assert "error rate" in (latest.reason or "")
        assert {(await server.predict("m", [row(i)], key=f"k{i}")).version for i in range(20)} == {"1"}
    finally:
        await server.stop()


class FailsOnHour(FakeRuntime):
    """Raises for rows with ``dep_hour == 10``."""

    def predict(self, frame: Any) -> np.ndarray:
        x = np.asarray(frame)
        if (np.nan_to_num(x[:, 0]) == 10).any():
            raise RuntimeError("model exploded")
        return self.offset + 0.001 * np.nan_to_num(x[:, 0])


def test_records_default_to_ok_and_carry_status_and_error() -> None:
    ok = PredictionRecord("a", 1.7e9, "m", "1", "champion", {"x": 1.0}, 0.3, 1.0)
    bad = PredictionRecord("b", 1.7e9, "m", "1", "champion", {"x": 2.0}, None, 2.0, status="error", error="serving.model_failed")
    rows = records_to_arrow([ok, bad]).to_pylist()
    assert [(r["status"], r["error"], r["prediction"]) for r in rows] == [("ok", None, 0.3), ("error", "serving.model_failed", None)]


async def test_failed_model_calls_are_logged_and_burn_availability(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "p")
    table = "logs.predictions"
    # a log written before status/error existed: its rows must still read as served predictions
    old = records_to_arrow([PredictionRecord(f"old{i}", time.time() - 60, "m", "1", "champion", row(i), 0.2, 1.0) for i in range(6)])
    old = old.drop_columns(["status", "error"])
    ws.lake.write(table, old, mode="append", partition_by=["_date"])

    reg = FakeRegistry()
    reg.add("m", "1", lambda: FailsOnHour("m", "1"), "champion")
    plog = PredictionLogger(lake=ws.lake, table=table, flush_rows=1000, flush_interval_s=0.05)
    spec = serving_spec(models={"m": {}}, poll_interval_s=0)
    server = await started(ModelServer(ws, spec, loader=reg.load, resolver=reg.resolve, prediction_logger=plog))
    try:
        codes = []
        for i in range(12):  # dep_hour = 8 + i: request 2 fails
            try:
                await server.predict("m", [row(i)], request_id=f"r{i}")
            except StewardError as exc:
                codes.append((exc.code, exc.http_status))
        with pytest.raises(ValidationFailed):
            await server.predict("m", [row(0, dep_hour="late")], request_id="rejected")  # a client error: not logged
        assert codes == [("serving.model_failed", 500)]
        await asyncio.to_thread(plog.flush)
    finally:
        await server.stop()

    everything = read_log(ws, table=table, model="m", include_errors=True).collect()
    assert everything.height == 6 + 12 and "rejected" not in everything.get_column("request_id").to_list()
    errors = everything.filter(everything.get_column("status") == "error")
    assert errors.get_column("request_id").to_list() == ["r2"]
    assert errors.get_column("error").to_list() == ["serving.model_failed"] and errors.get_column("prediction").to_list() == [None]
    assert everything.filter(everything.get_column("request_id").str.starts_with("old")).get_column("status").null_count() == 6

    slo = SloSpec(name="availability", objective=0.99)
    status = evaluate_slo(sli_events(everything, slo), slo)
    assert status.events == 18 and status.sli == pytest.approx(17 / 18)
    # drift and performance read served predictions only
    served = read_log(ws, table=table, model="m").collect()
    assert served.height == 17 and served.get_column("prediction").null_count() == 0
