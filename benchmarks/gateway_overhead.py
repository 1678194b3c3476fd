"""Latency the LLM gateway adds on top of its upstream, at a fixed request rate.

Three real processes on 127.0.0.1:
  * an OpenAI-compatible upstream (raw ASGI on uvicorn) answering every chat completion after a fixed 20 ms;
  * the Steward API (``create_app(ws)``, one uvicorn worker) with a gateway key that has a budget and a rate
    limit (so the atomic SQLite reservation and settlement run on every request), exact cache off (every request
    goes upstream), usage rows and OpenTelemetry spans recorded;
  * a separate load-generator process sending the same chat requests open-loop at a fixed rate, first directly
    to the upstream, then through the gateway.

Both runs must return the same answers. Prints p50/p99 of each run, the added p50/p99, and ``ratio: X`` last,
where X is the added p50 in milliseconds (target: < 1 ms p50, < 3 ms p99 at 500 rps).

Usage: .venv/bin/python benchmarks/gateway_overhead.py [--rate 500] [--duration 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LATENCY_S = 0.020
MODEL = "bench-model-2025-01-01"
ANSWER = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1,
    "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "The flight is on time."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 24, "completion_tokens": 6, "total_tokens": 30},
}
BODY = {
    "model": "chat-default",
    "messages": [
        {"role": "system", "content": "You answer questions about flights from the context."},
        {"role": "user", "content": "Context: flight 1545 departed at 5:17 and arrived on time. Question: is flight 1545 late?"},
    ],
    "max_tokens": 32,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- upstream -------------------------------------------------------------------
def run_upstream(port: int) -> None:
    import orjson
    import uvicorn

    payload = orjson.dumps(ANSWER)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            msg = await receive()
            more = msg.get("more_body", False)
        await asyncio.sleep(LATENCY_S)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")


# -- gateway --------------------------------------------------------------------
def run_gateway(port: int, spec: str) -> None:
    import uvicorn

    from steward.api.app import create_app
    from steward.observability.gcfreeze import enable
    from steward.spec import load_spec
    from steward.workspace import Workspace

    enable()  # as `steward serve` does: start-up objects stay out of the GC's full passes
    uvicorn.run(
        create_app(Workspace(load_spec(spec))),
        host="127.0.0.1",
        port=port,
        workers=1,
        loop="uvloop",  # both installed; named so a missing one fails loudly instead of silently falling back
        http="httptools",
        log_level="warning",
        access_log=False,
    )


# -- load generator -------------------------------------------------------------
async def _load(url: str, token: str | None, rate: float, duration: float, warmup: float) -> dict[str, Any]:
    import aiohttp

    body = json.dumps(BODY if token else {**BODY, "model": MODEL}).encode()
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    latencies: list[float] = []
    answers: set[str] = set()
    errors = 0
    conn = aiohttp.TCPConnector(limit=256, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def one(record: bool) -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    data = await r.read()
                    ok = r.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok, data = False, b""
            dt = time.perf_counter() - t0
            if not record:
                return
            if not ok:
                errors += 1
                return
            latencies.append(dt)
            answers.add(json.loads(data)["choices"][0]["message"]["content"])

        tasks = []
        start = time.perf_counter()
        total = int((warmup + duration) * rate)
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i >= warmup * rate)))
        # Bounded: whatever has not finished 10 s after the last send counts as an error (the server fell behind).
        _done, pending = await asyncio.wait(tasks, timeout=10.0)
        for t in pending:
            t.cancel()
        errors += len(pending)
        elapsed = time.perf_counter() - start
    return {"latencies": latencies, "errors": errors, "answers": sorted(answers), "achieved_rps": total / elapsed}


def run_load(url: str, token: str | None, rate: float, duration: float, warmup: float) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = json.dumps(asyncio.run(_load(url, token, rate, duration, warmup)))
    # uvloop may leave stdout non-blocking: a large write into the pipe would then be cut short.
    os.set_blocking(sys.stdout.fileno(), True)
    sys.stdout.write(result + "\n")
    sys.stdout.flush()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- orchestration --------------------------------------------------------------
def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


def prime(url: str, token: str) -> None:
    """One request before measuring, so the gateway's lazy start-up is not counted as per-request CPU."""
    import urllib.request

    req = urllib.request.Request(
        url, data=json.dumps(BODY).encode(), headers={"content-type": "application/json", "authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", default="main", choices=["main", "upstream", "gateway", "load"])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--spec", default="")
    ap.add_argument("--url", default="")
    ap.add_argument("--token", default="")
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    args = ap.parse_args()
    if args.role == "upstream":
        return run_upstream(args.port)
    if args.role == "gateway":
        return run_gateway(args.port, args.spec)
    if args.role == "load":
        return run_load(args.url, args.token or None, args.rate, args.duration, args.warmup)

    load_before = os.getloadavg()[0]
    py, me = sys.executable, str(Path(__file__).resolve())
    token = "sk-bench-" + os.urandom(8).hex()
    env = {**os.environ, "STEWARD_KEY_BENCH": token, "DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1"}
    up_port, gw_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "steward.yaml"
        spec.write_text(
            "project: bench\n"
            "llm:\n"
            "  gateway:\n"
            "    providers:\n"
            f"      up: {{kind: openai, base_url: 'http://127.0.0.1:{up_port}/v1', timeout_s: 5, max_retries: 1}}\n"
            f"    aliases: {{chat-default: ['up:{MODEL}']}}\n"
            "    keys:\n"
            "      bench: {key_env: STEWARD_KEY_BENCH, team: perf, budget: {tokens: 1000000000, usd: 100000, period: day},"
            " rate_limit: {requests_per_minute: 1000000, tokens_per_minute: 1000000000}}\n"
            "    teams: {perf: {budget: {usd: 100000, period: month}}}\n"
            f"    prices: {{'up:{MODEL}': {{input_per_1m: 0.5, output_per_1m: 1.5}}}}\n"
            "    cache: {exact: false, semantic: false}\n"
        )
        try:
            procs.append(subprocess.Popen([py, me, "--role", "upstream", "--port", str(up_port)], env=env))
            procs.append(subprocess.Popen([py, me, "--role", "gateway", "--port", str(gw_port), "--spec", str(spec)], env=env))
            wait_port(up_port)
            wait_port(gw_port)
            prime(f"http://127.0.0.1:{gw_port}/v1/chat/completions", token)  # the gateway is built on its first request
            results = {}
            for name, url, tok in (
                ("direct", f"http://127.0.0.1:{up_port}/v1/chat/completions", ""),
                ("gateway", f"http://127.0.0.1:{gw_port}/v1/chat/completions", token),
            ):
                cmd = [
                    py,
                    me,
                    "--role",
                    "load",
                    "--url",
                    url,
                    "--rate",
                    str(args.rate),
                    "--duration",
                    str(args.duration),
                    "--warmup",
                    str(args.warmup),
                ]
                if tok:
                    cmd += ["--token", tok]
                cpu0 = cpu_seconds(procs[1].pid)
                out = subprocess.run(cmd, env=env, capture_output=True, check=True, timeout=args.duration + args.warmup + 60)
                results[name] = json.loads(out.stdout)
                results[name]["gateway_cpu_s"] = cpu_seconds(procs[1].pid) - cpu0
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=10)
        usage_rows = _usage_rows(Path(tmp))
    d, g = results["direct"], results["gateway"]
    expected = [ANSWER["choices"][0]["message"]["content"]]  # type: ignore[index]
    assert d["answers"] == expected and g["answers"] in ([], expected), (d["answers"], g["answers"])  # same answers both ways
    print(
        f"upstream latency: {LATENCY_S * 1000:.0f} ms, rate: {args.rate:.0f} rps, {args.duration:.0f} s per run (after {args.warmup:.0f} s warm-up)"
    )
    print(f"machine: {os.cpu_count()} cores, load average before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    for name, r in (("direct", d), ("gateway", g)):
        lat = r["latencies"]
        print(
            f"{name:8s} n={len(lat)} errors={r['errors']} achieved={r['achieved_rps']:.0f} rps  "
            f"p50={pct(lat, 0.5):.2f} ms  p99={pct(lat, 0.99):.2f} ms  mean={statistics.fmean(lat or [float('nan')]) * 1000:.2f} ms"
        )
    print(f"gateway usage rows recorded: {usage_rows}")
    sent = int((args.warmup + args.duration) * args.rate)
    print(f"gateway process CPU: {g['gateway_cpu_s'] * 1000 / sent:.3f} ms per request ({g['gateway_cpu_s']:.2f} s for {sent} requests)")
    add50 = pct(g["latencies"], 0.5) - pct(d["latencies"], 0.5)
    add99 = pct(g["latencies"], 0.99) - pct(d["latencies"], 0.99)
    print(f"added by the gateway: p50 {add50:.2f} ms, p99 {add99:.2f} ms (target < 1 ms p50, < 3 ms p99)")
    print(f"ratio: {add50:.2f}")


def _usage_rows(tmp: Path) -> int:
    import sqlite3

    db = tmp / ".steward" / "metadata.db"
    if not db.exists():
        return 0
    conn = sqlite3.connect(str(db))
    try:
        return int(conn.execute("SELECT COUNT(*) FROM llm_usage WHERE status = 'ok'").fetchone()[0])
    finally:
        conn.close()


if __name__ == "__main__":
    main()
