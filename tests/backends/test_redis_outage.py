"""Redis going away, black-holed or restarted: Steward fails fast with 503 problem+json and comes back by itself.

Every server here is a private redis-server (tests/backends/servers.py) on a free port, never the machine's own.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from servers import OwnRedis

from steward.backends.kv_redis import RedisKV
from steward.backends.online_redis import RedisOnlineStore
from steward.backends.redis_stream import RedisStreamBackend
from steward.errors import BackendUnavailable

PROBLEM = "application/problem+json"


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    try:
        yield server
    finally:
        server.close()


def _timed(call: Any) -> tuple[float, BaseException | None]:
    t0 = time.perf_counter()
    try:
        call()
    except Exception as exc:
        return time.perf_counter() - t0, exc
    return time.perf_counter() - t0, None


def test_every_redis_backend_fails_fast_when_black_holed_or_down_and_recovers(own_redis: OwnRedis) -> None:
    kv = RedisKV(own_redis.url, prefix="t:")
    online = RedisOnlineStore(own_redis.url, prefix="t:f:")
    stream = RedisStreamBackend(own_redis.url)
    online.replace("users", {"u1": "a"})
    stream.ensure_group("s", "g")
    calls = {
        "counters": lambda: kv.reserve([("c", 1, 100, 60.0)]),
        "cache": lambda: kv.cache_get("k"),
        "online": lambda: online.read({"users": ["u1"]}),
        "stream": lambda: stream.add("s", {"x": "1"}),
    }
    try:
        own_redis.freeze()  # accepts TCP, answers nothing: the case that took 5 s per request
        for name, call in calls.items():
            elapsed, exc = _timed(call)
            assert isinstance(exc, BackendUnavailable), (name, exc)
            assert exc.code == "backend.unavailable" and exc.http_status == 503 and own_redis.url in exc.message
            assert elapsed < 1.0, (name, elapsed)
        for backend in (kv, online, stream):
            assert isinstance(_timed(backend.ping)[1], BackendUnavailable)
        own_redis.thaw()
        own_redis.stop()  # refused: fails at once
        for name, call in calls.items():
            elapsed, exc = _timed(call)
            assert isinstance(exc, BackendUnavailable) and elapsed < 1.0, (name, exc, elapsed)
        own_redis.start()  # a restart (no persistence): the same objects work again, no reopening
        assert kv.reserve([("c", 5, 100, 60.0)]) == -1 and kv.get("c") == 5
        online.replace("users", {"u1": "b"})
        assert online.read({"users": ["u1", "u2"]}) == {"users": ["b", None]}
        stream.ensure_group("s", "g")
        mid = stream.add("s", {"x": "2"})
        assert [m for m, _ in stream.read("s", "g", "c1")] == [mid]
        for backend in (kv, online, stream):
            backend.ping()
    finally:
        own_redis.thaw()
        for backend in (kv, online, stream):
            backend.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def gateway_base(tmp_path: Path, own_redis: OwnRedis, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The gateway under a real uvicorn, its budgets and rate limits on the private Redis."""
    import uvicorn

    from steward.api.app import create_app
    from steward.llm.gateway import Gateway
    from steward.workspace import open_workspace

    monkeypatch.setenv("STEWARD_KEY_OUTAGE", "sk-outage")
    doc = {
        "project": "outage",
        "llm": {
            "gateway": {
                "keys": {"a": {"key_env": "STEWARD_KEY_OUTAGE", "budget": {"tokens": 1_000_000, "period": "day"}}},
                "cache": {"exact": False},
            }
        },
        "storage": {"cache_url": own_redis.url},
    }
    (tmp_path / "steward.yaml").write_text(yaml.safe_dump(doc))
    ws = open_workspace(tmp_path)
    gw = Gateway(ws)
    app = create_app(ws, llm_gateway=gw)
    port = _free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", access_log=False, lifespan="on"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(15)
        ws.close()


def test_gateway_answers_503_problem_fast_while_redis_is_out_and_recovers(gateway_base: str, own_redis: OwnRedis) -> None:
    body = {"model": "local:x", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
    auth = {"authorization": "Bearer sk-outage"}
    with httpx.Client(base_url=gateway_base, timeout=10) as client:
        assert client.post("/v1/chat/completions", json=body, headers=auth).status_code == 200
        assert client.get("/readyz").json()["backends"]["counters_cache"]["ok"] is True
        for outage in (own_redis.freeze, own_redis.stop):
            outage()
            t0 = time.perf_counter()
            r = client.post("/v1/chat/completions", json=body, headers=auth)
            elapsed = time.perf_counter() - t0
            # the gateway answers in OpenAI's error shape (the steward code rides along in the error object)
            assert r.status_code == 503 and r.json()["error"]["type"] == "api_error", r.text
            assert int(r.headers["retry-after"]) >= 1 and r.json()["error"]["steward_code"] == "backend.unavailable"
            assert elapsed < 1.5, elapsed  # before: 5 s (black hole) and a plain-text 500
            ready = client.get("/readyz")
            state = ready.json()["backends"]["counters_cache"]
            assert ready.status_code == 503 and state["ok"] is False and "Redis" in state["reason"], state
            own_redis.thaw()
        own_redis.start()
        r = client.post("/v1/chat/completions", json=body, headers=auth)
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 5  # readiness is probed at most once a second: it follows within that
        while not client.get("/readyz").json()["backends"]["counters_cache"]["ok"]:
            assert time.monotonic() < deadline, "/readyz did not recover"
            time.sleep(0.1)
