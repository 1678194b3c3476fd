"""A champion that fails verification at start-up: the server serves ``previous``, degraded and visible; nothing verifies: not ready.

Defect 1 of the fault pass: a champion whose ``model.lgb`` had one flipped byte left a restarted
``steward serve`` with /readyz 503 and every predict 503 ``serving.not_loaded``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from serving_helpers import make_workspace, register, row, train_booster

import steward
from steward.registry.versions import set_alias
from steward.serving.server import ModelServer
from steward.workspace import open_workspace

OP_KEY = "fallback-operator-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def register_tracked(ws: steward.workspace.Workspace, name: str, seed: int) -> tuple[int, Path]:
    before = set((ws.root / "mlartifacts").rglob("model.lgb"))
    version = register(ws, name, train_booster(seed, rounds=5))
    (stored,) = set((ws.root / "mlartifacts").rglob("model.lgb")) - before
    return version, stored


class Serve:
    """``steward serve`` as a real process on a free port (started and stopped by the test)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        src = str(Path(steward.__file__).resolve().parents[1])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p),
            "STEWARD_API_KEYS": f"{OP_KEY}:operator",
        }
        cmd = [
            sys.executable,
            "-m",
            "steward",
            "--spec",
            str(self.root / "steward.yaml"),
            "serve",
            "--port",
            str(self.port),
            "--no-monitor",
        ]
        self.log = (self.root / "serve.log").open("ab")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def readyz(self, timeout_s: float = 120.0) -> httpx.Response:
        """The first /readyz answer once the server has tried to load its models (200, or 503 with a reason)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"steward serve exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                r = httpx.get(f"{self.base}/readyz", timeout=2)
                models = r.json().get("models", {})
                if r.status_code == 200 or any(m.get("error") for m in models.values()):
                    return r
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"steward serve never answered /readyz:\n{self.tail()}")

    def tail(self) -> str:
        return (self.root / "serve.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.log.close()
            self.proc = None


def test_restart_with_a_tampered_champion_serves_previous_degraded(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    ws = make_workspace(root, "models:\n  flights: {}\npoll_interval_s: 0\nprediction_log: {enabled: false}\naccess_log: false")
    v1, _ = register_tracked(ws, "flights", 0)
    v2, stored = register_tracked(ws, "flights", 1)
    set_alias(ws, "flights", "champion", v1, actor="test", reason="setup", action="promote")
    ws.close()
    serve = Serve(root)
    try:
        serve.start()
        assert serve.readyz().json()["status"] == "ready"
        serve.stop()

        # what the defect left behind: v2 champion (v1 previous) and one flipped byte in v2's model.lgb
        ws = open_workspace(root)
        set_alias(ws, "flights", "previous", v1, actor="test", reason="setup", action="promote")
        set_alias(ws, "flights", "champion", v2, actor="test", reason="setup", action="promote")
        ws.close()
        flip_one_byte(stored)

        serve.start()
        r = serve.readyz()
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["status"], body["ready"], body["degraded"]) == ("degraded", True, ["flights"])
        state = body["models"]["flights"]
        assert state["version"] == str(v1) and state["degraded"]["wanted"] == str(v2) and state["degraded"]["serving"] == str(v1)
        assert state["degraded"]["reason"].startswith(f"flights v{v2}: model.lgb sha256 mismatch (expected ")

        p = httpx.post(f"{serve.base}/v1/models/flights/predict", json={"row": row(0)}, headers={"Authorization": f"Bearer {OP_KEY}"})
        assert p.status_code == 200 and p.json()["version"] == str(v1), p.text

        metrics = httpx.get(f"{serve.base}/metrics").text
        assert 'steward_model_degraded{model="flights"} 1.0' in metrics
        assert 'steward_model_verification_failures_total{model="flights"} 1.0' in metrics
        assert "steward_ready 1.0" in metrics
    finally:
        serve.stop()
    ws = open_workspace(root)
    (entry,) = ws.audit.entries(model="flights", action="serving.degraded")
    assert entry.actor == "system:serve" and entry.payload["details"]["wanted"] == str(v2)
    ws.close()


@pytest.mark.anyio
async def test_nothing_that_verifies_is_not_ready_with_the_reason_and_recovery_clears_it(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, "models:\n  flights: {}\npoll_interval_s: 0\nprediction_log: {enabled: false}")
    v1, stored1 = register_tracked(ws, "flights", 0)
    v2, stored2 = register_tracked(ws, "flights", 1)
    set_alias(ws, "flights", "previous", v1, actor="test", reason="setup", action="promote")
    set_alias(ws, "flights", "champion", v2, actor="test", reason="setup", action="promote")
    good1, good2 = stored1.read_bytes(), stored2.read_bytes()
    flip_one_byte(stored1)
    flip_one_byte(stored2)
    server = ModelServer(ws)
    await server.start()
    try:
        with pytest.raises(Exception, match="sha256 mismatch"):
            await server.reload("flights")
        state = server.readiness()
        assert state["ready"] is False and state["degraded"] == ["flights"]
        reason = state["models"]["flights"]["degraded"]["reason"]
        assert reason.startswith(f"flights v{v2}: model.lgb sha256 mismatch")
        assert f"the 'previous' version fails too: flights v{v1}: model.lgb sha256 mismatch" in reason
        assert state["models"]["flights"]["degraded"]["serving"] is None

        stored1.write_bytes(good1)  # previous restored: a reload serves it, still degraded
        report = await server.reload("flights")
        assert report["champion"] == str(v1) and server.readiness()["models"]["flights"]["degraded"]["serving"] == str(v1)
        stored2.write_bytes(good2)  # the champion restored: a reload serves it, degraded no more
        report = await server.reload("flights")
        assert report["champion"] == str(v2) and server.readiness()["degraded"] == []
        assert server.metrics.degraded.labels("flights")._value.get() == 0
    finally:
        await server.stop()
    actions = [e.action for e in ws.audit.entries(model="flights", action="serving.")]
    assert actions == ["serving.degraded", "serving.degraded", "serving.recovered"]
    ws.close()
