"""Soak test: a real ``steward serve`` under steady load for a bounded time; reports errors and RSS growth.

Trains a tiny LightGBM model (synthetic flights-like data), registers it through
Steward's registry, starts ``steward serve`` on 127.0.0.1 with prediction logging
on and a shadow rollout of a second version running, then keeps 16 concurrent
clients busy for ``--seconds`` (60 by default; ``--long`` = 10 minutes) while
sampling the server's resident memory. Every request stops by itself at the deadline.

    .venv/bin/python benchmarks/soak.py [--seconds 60 | --long]

Prints requests, errors, RSS at start/end and growth; the last line is
``ratio: X`` = RSS at the end / RSS after warm-up (1.00 = no growth).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "serving"))
API_KEY = "soak-admin-key"


def rss_kb(pid: int) -> int:
    """Resident set size of a process and its children, in KiB (from /proc)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


async def clients(port: int, seconds: float, concurrency: int, stats: dict[str, Any]) -> None:
    import httpx
    from serving_helpers import row

    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=10, limits=httpx.Limits(max_connections=concurrency)
    ) as client:

        async def worker(w: int) -> None:
            i = w
            while time.monotonic() < deadline:
                i += concurrency
                body: dict[str, Any] = {"row": row(i), "key": f"user{i % 500}"} if i % 10 else {"rows": [row(i + k) for k in range(20)]}
                try:
                    r = await client.post("/v1/models/soak/predict", json=body, headers=headers)
                    stats["requests"] += 1
                    if r.status_code != 200:
                        stats["errors"] += 1
                        stats["codes"][r.status_code] = stats["codes"].get(r.status_code, 0) + 1
                except httpx.HTTPError as exc:
                    stats["errors"] += 1
                    stats["codes"][type(exc).__name__] = stats["codes"].get(type(exc).__name__, 0) + 1

        await asyncio.gather(*(worker(w) for w in range(concurrency)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--long", action="store_true", help="soak for 10 minutes")
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    seconds = 600.0 if args.long else args.seconds

    from serving_helpers import make_workspace, register, train_booster

    tmp = Path(tempfile.mkdtemp(prefix="steward-soak-"))
    ws = make_workspace(
        tmp / "project",
        "models:\n  soak:\n    rollout: {mode: shadow, auto: false}\n"
        "prediction_log: {flush_rows: 5000, flush_interval_s: 2}\npoll_interval_s: 5\naccess_log: false\ntrace_sample_ratio: 0.01",
        project="soak",
    )
    register(ws, "soak", train_booster(0), champion=True)
    register(ws, "soak", train_booster(1))  # the challenger, shadowed
    from steward.serving.rollout import RolloutController
    from steward.spec import RolloutSpec

    RolloutController(ws).start("soak", RolloutSpec(mode="shadow", auto=False), champion_version="1", challenger_version="2", actor="soak")
    ws.close()

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "STEWARD_API_KEYS": f"{API_KEY}:admin"}
    cmd = [
        str(Path(sys.executable).parent / "steward"),
        "--spec",
        str(tmp / "project"),
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"steward serve exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            time.sleep(0.25)
        stats: dict[str, Any] = {"requests": 0, "errors": 0, "codes": {}}
        asyncio.run(clients(port, min(10.0, seconds / 6), args.concurrency, stats))  # warm-up
        rss0 = rss_kb(proc.pid)
        samples = [rss0]
        stats = {"requests": 0, "errors": 0, "codes": {}}

        async def run() -> None:
            task = asyncio.create_task(clients(port, seconds, args.concurrency, stats))
            while not task.done():
                await asyncio.sleep(min(5.0, seconds / 12))
                samples.append(rss_kb(proc.pid))
            await task

        t0 = time.monotonic()
        asyncio.run(run())
        elapsed = time.monotonic() - t0
        rss1 = rss_kb(proc.pid)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text

        def metric(name: str) -> float:
            return sum(float(ln.split()[-1]) for ln in metrics.splitlines() if ln.startswith(name) and not ln.startswith("#"))

        print(f"soak: {elapsed:.0f} s, {args.concurrency} clients, shadow rollout on, prediction log on")
        print(
            f"requests: {stats['requests']} ({stats['requests'] / elapsed:.0f} req/s), errors: {stats['errors']} {json.dumps(stats['codes'])}"
        )
        print(
            f"shadow comparisons: {metric('steward_shadow_comparisons_total'):.0f}, shadow dropped: {metric('steward_shadow_dropped_total'):.0f}"
        )
        print(
            f"prediction log: written {metric('steward_prediction_log_written_total'):.0f}, dropped {metric('steward_prediction_log_dropped_total'):.0f}"
        )
        print(
            f"RSS after warm-up: {rss0 / 1024:.1f} MiB, at end: {rss1 / 1024:.1f} MiB, max: {max(samples) / 1024:.1f} MiB, growth: {(rss1 - rss0) / 1024:+.1f} MiB"
        )
        print(f"ratio: {rss1 / rss0:.2f}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
