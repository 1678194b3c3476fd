"""The demo's production stage: serve, replay 2013 day by day as traffic, land the delayed labels, monitor, heal.

``steward serve`` runs as a separate process on 127.0.0.1 and gets one-row requests over HTTP;
each replayed day's arrivals land the next morning as labels; monitoring judges each window
(through :func:`steward.ops.run_monitor`) and a breach starts the self-healing loop
(:func:`steward.ops.run_loop`) in a thread beside the replay.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl

from steward import ops
from steward.data import run_pipeline
from steward.demo._types import DEMO_ACTOR, DemoOptions, DemoReporter, DemoSummary
from steward.examples.lander import land, load_table
from steward.features import materialize
from steward.workspace import Workspace, open_workspace

__all__ = ["production_stage"]


@dataclass
class _Server:
    proc: Any
    base_url: str
    log_path: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _demo_keys() -> dict[str, str]:
    """API keys for the demo server, from the environment (generated once per run when unset)."""
    for name in ("STEWARD_ADMIN_KEY", "STEWARD_APP_KEY", "STEWARD_VIEWER_KEY"):
        os.environ.setdefault(name, secrets.token_urlsafe(24))
    return {"admin": os.environ["STEWARD_ADMIN_KEY"], "app": os.environ["STEWARD_APP_KEY"], "viewer": os.environ["STEWARD_VIEWER_KEY"]}


def _start_server(ws: Workspace, reporter: DemoReporter) -> _Server:
    port = int(os.environ.get("STEWARD_DEMO_PORT") or _free_port())
    log_path = ws.root / "serve.log"
    log = log_path.open("ab")
    # --no-monitor: the demo replays 2013 day by day and judges each replayed window itself; the
    # server's own monitor would judge by today's clock
    cmd = [
        sys.executable,
        "-m",
        "steward",
        "--spec",
        str(ws.spec.spec_path),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-monitor",
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"steward serve exited with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                reporter.note(f"steward serve is up at {base} (ready: every configured model loaded; log: {log_path}).")
                return _Server(proc, base, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"steward serve did not become ready in 180 s; see {log_path}")


def _stop_server(server: _Server) -> None:
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=30)
    except Exception:
        server.proc.kill()


WEATHER = ("temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib")


def _weather_feed(weather: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """The calling app's weather feed: the observation at each airport and hour."""
    return {
        (r["origin"], r["time_hour"]): {c: r[c] for c in WEATHER}
        for r in weather.select(["origin", "time_hour", *WEATHER]).iter_rows(named=True)
    }


def _request_rows(flights: Any, day: date, n: int, weather: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    todays = flights.filter((pl.col("year") == day.year) & (pl.col("month") == day.month) & (pl.col("day") == day.day))
    if todays.height > n:
        todays = todays.sample(n, seed=day.toordinal())
    rows = []
    for r in todays.sort("time_hour").iter_rows(named=True):
        # The app sends the schedule and the current weather; the server adds the rest (late-arrival
        # shares, plane age) from the online store.
        wx = weather.get((r["origin"], r["time_hour"]), dict.fromkeys(WEATHER))
        rows.append(
            {
                **wx,
                "carrier": r["carrier"],
                "flight": int(r["flight"]),
                "origin": r["origin"],
                "dest": r["dest"],
                "tailnum": r["tailnum"],
                "time_hour": r["time_hour"],
                "hour": int(r["hour"]),
                "month": int(r["month"]),
                "distance": int(r["distance"]),
            }
        )
    return rows


def _send(client: Any, model: str, rows: list[dict[str, Any]], workers: int = 8) -> tuple[int, int, list[float]]:
    """Send one-row predict requests concurrently; return (ok, errors, latencies ms)."""

    def one(row: dict[str, Any]) -> tuple[bool, float]:
        t0 = time.perf_counter()
        try:
            # the sticky key keeps one flight on one rollout variant
            sticky = f"{row['carrier']}{row['flight']}-{row['time_hour']}"
            resp = client.post(f"/v1/models/{model}/predict", json={"row": row, "key": sticky})
            ok = resp.status_code == 200
        except Exception:
            ok = False
        return ok, (time.perf_counter() - t0) * 1000

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, rows))
    ok = sum(1 for r in results if r[0])
    return ok, len(results) - ok, [r[1] for r in results]


def _red_from_metrics(text: str, model: str) -> dict[str, dict[str, float]]:
    """Requests, errors and mean latency per (version, variant) of ``model`` from a Prometheus exposition."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if line.startswith("#") or f'model="{model}"' not in line:
            continue
        name, _, value = line.rpartition(" ")
        labels = dict(re.findall(r'(\w+)="([^"]*)"', name))
        key = f"v{labels.get('version', '?')} {labels.get('variant', '?')}"
        acc = out.setdefault(key, {"requests": 0.0, "errors": 0.0, "sum": 0.0, "count": 0.0})
        try:
            v = float(value)
        except ValueError:
            continue
        if name.startswith("steward_model_requests_total"):
            acc["requests"] += v
            if labels.get("status") == "error":
                acc["errors"] += v
        elif name.startswith("steward_model_request_duration_seconds_sum"):
            acc["sum"] += v
        elif name.startswith("steward_model_request_duration_seconds_count"):
            acc["count"] += v
    for acc in out.values():
        acc["mean_ms"] = acc["sum"] / acc["count"] * 1000 if acc["count"] else float("nan")
    return {k: v for k, v in out.items() if v["requests"]}


@dataclass
class _Heal:
    """The self-healing loop running beside the traffic, in a thread."""

    thread: Any = None
    results: list[Any] = field(default_factory=list)
    error: BaseException | None = None


def _start_loop(ws_path: Path, model: str, heal: _Heal, reporter: DemoReporter) -> None:
    def work() -> None:
        lws = open_workspace(ws_path)  # its own connections: the loop runs beside the replay
        try:
            heal.results.extend(ops.run_loop(lws, model=model, poll_s=1.0, timeout_s=600, actor=DEMO_ACTOR))
        except BaseException as exc:  # reported by the replay thread
            heal.error = exc
        finally:
            lws.close()

    heal.results.clear()
    heal.error = None
    heal.thread = threading.Thread(target=work, name="steward-loop", daemon=True)
    heal.thread.start()


def _replay_window(options: DemoOptions) -> tuple[date, date]:
    return (date(2013, 2, 1), date(2013, 2, 10)) if options.quick else (date(2013, 7, 1), date(2013, 12, 31))


def production_stage(ws: Workspace, options: DemoOptions, reporter: DemoReporter, summary: DemoSummary) -> None:
    """Serve, replay production traffic day by day, land the delayed labels, monitor, and heal."""
    name = ws.spec.model.name
    start, end = _replay_window(options)
    per_day = 60
    reporter.stage(
        "Production",
        f"Start `steward serve` on 127.0.0.1 and replay {start} → {end} day by day through the HTTP API as production "
        "traffic (one-row requests carrying only entity keys and schedule fields; the server fills the rest from the online "
        "store). Each day's actual arrivals land the next morning: those are the delayed labels. Monitoring judges each "
        "window; a policy breach starts the self-healing loop (retrain → gate → canary → promote or roll back).",
    )
    keys = _demo_keys()
    server = _start_server(ws, reporter)
    summary.server_url = server.base_url
    flights = load_table("flights")
    weather = _weather_feed(load_table("weather"))
    landing = ws.spec.resolve("landing")
    heal = _Heal()
    client = httpx.Client(base_url=server.base_url, headers={"authorization": f"Bearer {keys['app']}"}, timeout=30)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    monitor_every = 2 if options.quick else 14
    ingest_every = 1 if options.quick else 3
    latencies: list[float] = []
    try:
        materialize(ws, as_of=datetime(start.year, start.month, start.day, tzinfo=UTC))
        for i, day in enumerate(days):
            ok, bad, lat = _send(client, name, _request_rows(flights, day, per_day, weather))
            latencies += lat
            summary.requests += ok + bad
            summary.request_errors += bad
            land(landing, day, day)  # the day's file drops: its actual arrivals are the labels for today's predictions
            if (i + 1) % ingest_every == 0 or i + 1 == len(days):
                # the nightly job: ingest what landed, refresh the online store's aggregates
                run_pipeline(ws, sources=["flights", "weather"], date_from=day - timedelta(days=ingest_every - 1), date_to=day)
                materialize(ws, as_of=datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1))
            reporter.progress("replaying days", i + 1, len(days))
            if (i + 1) % monitor_every and i + 1 != len(days):
                continue
            time.sleep(2.5)  # let the server's prediction log flush (batched, asynchronous)
            try:
                verdict = ops.run_monitor(ws, name)[0]
            except Exception as exc:  # no window yet, no reference: say so, keep replaying
                reporter.note(f"{day}: monitoring skipped ({exc})")
                continue
            worst = sorted((c for c in verdict.checks if c.value is not None), key=lambda c: c.status != "breach")[:3]
            desc = "; ".join(f"{c.policy}:{c.column}={c.value:.3f} ({c.status})" for c in worst)
            summary.drift_events += sum(1 for c in verdict.checks if c.status == "breach")
            reporter.note(f"{day}: window of {verdict.n_rows} predictions → {verdict.status}. {desc}")
            busy = heal.thread is not None and heal.thread.is_alive()
            if heal.thread is not None and not busy:
                _report_loop(heal, reporter, summary)
                heal.thread = None
            if any(a.action in ("retrain", "shadow-then-promote") for a in verdict.actions) and not busy:
                reporter.note(
                    f"{day}: policy breach → starting the self-healing loop: " + "; ".join(a.reason for a in verdict.actions)[:200]
                )
                _start_loop(ws.spec.spec_path, name, heal, reporter)
        if heal.thread is not None:
            reporter.note("waiting for the self-healing loop to finish (its canary needs traffic: replaying the last day again)…")
            while heal.thread.is_alive():
                _send(client, name, _request_rows(flights, days[-1], 40, weather))
                heal.thread.join(timeout=1.0)
            _report_loop(heal, reporter, summary)
        metrics = client.get("/metrics").text
    finally:
        client.close()
        _stop_server(server)
    red = _red_from_metrics(metrics, name)
    rows = [[k, int(v["requests"]), int(v["errors"]), f"{v['mean_ms']:.2f}"] for k, v in sorted(red.items())]
    reporter.table("RED per version and variant (from /metrics)", ["version / variant", "requests", "errors", "mean ms"], rows)
    if latencies:
        p50, p99 = np.percentile(latencies, [50, 99])
        summary.client_p50_ms, summary.client_p99_ms = float(p50), float(p99)
        reporter.note(f"client-side latency over {len(latencies)} requests: p50 {p50:.1f} ms, p99 {p99:.1f} ms (8 concurrent clients).")


def _report_loop(heal: _Heal, reporter: DemoReporter, summary: DemoSummary) -> None:
    if heal.error is not None:
        reporter.note(f"self-healing loop stopped: {heal.error}")
        summary.loops.append(f"error: {heal.error}")
        return
    for r in heal.results:
        line = f"loop {r.loop_id[:8]}: {r.outcome} — {r.reason}"
        summary.loops.append(line)
        reporter.note(line)
