"""A PostgreSQL metadata store restarting under a real uvicorn with traffic: 503 problem+json while it is
down, /readyz not ready with the reason, and full recovery by itself with every prediction logged once.

The server is a private PostgreSQL (tests/backends/servers.py), never the machine's own.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_helpers import FakeRegistry, native_runtime, row, serving_spec

from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.serving.server import ModelServer
from steward.workspace import open_workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends"))
from servers import OwnPostgres

KEYS = ApiKeys({"op": ("op", "operator"), "admin": ("admin", "admin")})
OP = {"Authorization": "Bearer op"}
ADMIN = {"Authorization": "Bearer admin"}
PROBLEM = "application/problem+json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.1)


@pytest.fixture
def pg() -> Iterator[OwnPostgres]:
    server = OwnPostgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def live(tmp_path: Path, pg: OwnPostgres) -> Iterator[tuple[str, Any]]:
    import uvicorn

    root = tmp_path / "p"
    root.mkdir()
    (root / "steward.yaml").write_text(f"project: outage\nstorage:\n  metadata_url: {pg.url}\n")
    ws = open_workspace(root)
    reg = FakeRegistry()
    reg.add("m", "1", lambda: native_runtime(0, "m", "1"), "champion")
    spec = serving_spec(
        models={"m": {}},
        poll_interval_s=0,
        prediction_log={"enabled": True, "flush_rows": 50, "flush_interval_s": 0.2, "compact_every": 0},
        access_log=False,
    )
    server = ModelServer(ws, spec, loader=reg.load, resolver=reg.resolve)
    app = create_app(ws, model_server=server, api_keys=KEYS, serving_spec=spec)
    port = _free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    _until(ready, 20, "uvicorn becoming ready")
    try:
        yield base, ws
    finally:
        uv.should_exit = True
        thread.join(15)
        ws.close()


def test_postgres_restart_under_traffic_is_503_then_recovers_with_every_prediction_logged_once(
    live: tuple[str, Any], pg: OwnPostgres
) -> None:
    base, ws = live
    ok: list[str] = []
    failures: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=base, timeout=5) as client:
            i = 0
            while not stop.is_set():
                rid = f"req-{i}"
                try:
                    r = client.post("/v1/models/m/predict", json={"row": row(i % 7)}, headers={**OP, "X-Request-ID": rid})
                except httpx.HTTPError:
                    failures.append(-1)
                    return
                (ok.append(rid) if r.status_code == 200 else failures.append(r.status_code))
                i += 1
                time.sleep(0.02)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/v1/admin/rollouts/m", headers=ADMIN).status_code == 200
        _until(lambda: len(ok) > 20, 10, "traffic before the outage")

        pg.stop()
        # every route that needs the metadata store: 503 problem+json with Retry-After, never a plain-text 500
        for path in ("/v1/admin/rollouts/m", "/v1/agent/runs/r-1", "/v1/agent/approvals"):
            r = client.get(path, headers=ADMIN)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.headers["content-type"].startswith(PROBLEM), r.text
            assert int(r.headers["retry-after"]) >= 1
            body = r.json()
            assert body["code"] == "backend.unavailable" and "PostgreSQL" in body["detail"], body
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["content-type"].startswith(PROBLEM)
        meta = ready.json()["backends"]["metadata"]
        assert meta["ok"] is False and "PostgreSQL" in meta["reason"] and str(pg.port) in meta["url"], meta
        served_while_down = len(ok)
        time.sleep(1.0)  # predictions go on from memory while the metadata store is down
        assert len(ok) > served_while_down

        pg.start()
        # recovery by itself: no restart of the API, no manual reconnect
        _until(lambda: client.get("/readyz").status_code == 200, 10, "/readyz recovering")
        assert client.get("/readyz").json()["backends"]["metadata"]["ok"] is True
        r = client.get("/v1/admin/rollouts/m", headers=ADMIN)
        assert r.status_code == 200, r.text
        reload = client.post("/v1/admin/reload", headers=ADMIN)
        assert reload.status_code == 200 and "error" not in reload.json()["models"]["m"], reload.text
        time.sleep(0.5)
    stop.set()
    worker.join(10)
    assert not failures, failures[:5]
    # every answered prediction is in the log exactly once
    _until(lambda: _logged(ws) >= len(ok), 15, "the prediction log catching up")
    ids = _logged_ids(ws)
    assert len(ids) == len(set(ids)) == len(ok) and set(ids) == set(ok)


def _logged(ws: Any) -> int:
    try:
        return len(_logged_ids(ws))
    except Exception:
        return 0


def _logged_ids(ws: Any) -> list[str]:
    from deltalake import DeltaTable

    tbl = DeltaTable(ws.lake.uri("logs.predictions")).to_pyarrow_table(columns=["request_id"])
    return [str(x) for x in tbl.column("request_id").to_pylist()]
