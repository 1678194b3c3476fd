"""Peak memory of landing a big file: ``steward pipeline run`` against the naive path (Issue 15).

Generates into a temp dir a 100 MB file of junk lines and a ~1 GB valid
flights-shaped CSV, runs ``steward pipeline run`` on each in a fresh project
(a subprocess), and the peer: what a user would write by hand, ``pl.read_csv``
of the whole file plus pandera validation (polars backend) on the same files.
Prints wall time and peak RSS (the child's ``VmHWM``, polled every 0.1 s)
per run, and ``ratio: X`` last = peer peak RSS / Steward peak RSS on the 1 GB
file. A child whose RSS passes ``--kill-gb`` is killed (the machine is shared)
and reported as such.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/ingest_memory.py [--gb 1.0] [--junk-mb 100]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl

_EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "steward" / "examples" / "flights"

_PEER = r"""
import sys
import pandera.polars as pa
import polars as pl

path = sys.argv[1]
schema = pa.DataFrameSchema(
    {
        "year": pa.Column(pl.Int64, pa.Check.in_range(2000, 2100)),
        "month": pa.Column(pl.Int64, pa.Check.in_range(1, 12)),
        "day": pa.Column(pl.Int64, pa.Check.in_range(1, 31)),
        "sched_dep_time": pa.Column(pl.Int64, pa.Check.in_range(1, 2359)),
        "carrier": pa.Column(pl.String, pa.Check.str_matches(r"^[A-Z0-9]{2}$")),
        "flight": pa.Column(pl.Int64, pa.Check.in_range(1, 9999)),
        "origin": pa.Column(pl.String, pa.Check.isin(["EWR", "JFK", "LGA"])),
        "dest": pa.Column(pl.String, pa.Check.str_matches(r"^[A-Z]{3}$")),
        "arr_delay": pa.Column(pl.Float64, pa.Check.in_range(-120, 2000)),
        "distance": pa.Column(pl.Int64, pa.Check.in_range(1, 6000)),
    }
)
try:
    df = pl.read_csv(path)
    out = schema.validate(df, lazy=True)
    out.unique(subset=["year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"]).write_parquet(path + ".parquet")
    print("rows", out.height)
except Exception as exc:  # the naive path has no quarantine: a bad file is an exception
    print("failed:", type(exc).__name__, str(exc)[:200])
    sys.exit(1)
"""


def _junk(path: Path, mb: int) -> None:
    """Text junk: random printable lines (some with commas and quotes), written from a repeated random block."""
    rnd = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "  ,;.:-_\"'!?#"
    lines = ["".join(rnd.choices(alphabet, k=rnd.randint(10, 120))) for _ in range(40_000)]
    block = ("\n".join(lines) + "\n").encode()
    with path.open("wb") as fh:
        written = 0
        while written < mb << 20:
            fh.write(block)
            written += len(block)


def _flights(path: Path, gb: float) -> int:
    """A valid flights-shaped CSV of about ``gb`` GiB (nycflights13 columns and value ranges)."""
    rng = np.random.default_rng(7)
    carriers = np.array(["UA", "AA", "B6", "DL", "EV", "MQ", "US", "WN", "VX", "9E"])
    origins = np.array(["EWR", "JFK", "LGA"])
    dests = np.array(["ATL", "ORD", "LAX", "BOS", "MCO", "SFO", "CLT", "MIA", "DCA", "DEN"])
    n, rows, first = 1_000_000, 0, True
    with path.open("wb") as fh:
        while fh.tell() < gb * (1 << 30):
            month = rng.integers(1, 13, n)
            day = rng.integers(1, 29, n)
            hour = rng.integers(5, 23, n)
            minute = rng.integers(0, 60, n)
            sched_dep = hour * 100 + minute
            dep_delay = rng.integers(-10, 120, n).astype(float)
            dep_time = np.clip(sched_dep + dep_delay, 1, 2400)
            sched_arr = np.clip(sched_dep + 200, 1, 2359)
            arr_delay = dep_delay + rng.integers(-20, 20, n)
            arr_time = np.clip(sched_arr + arr_delay, 1, 2400)
            sched_arr = np.where(sched_arr == sched_dep, sched_arr + 1, sched_arr)
            ts = pl.datetime(2013, pl.Series(month), pl.Series(day), pl.Series(hour), time_zone="UTC")
            df = pl.DataFrame(
                {
                    "year": np.full(n, 2013),
                    "month": month,
                    "day": day,
                    "dep_time": dep_time,
                    "sched_dep_time": sched_dep,
                    "dep_delay": dep_delay,
                    "arr_time": arr_time,
                    "sched_arr_time": sched_arr,
                    "arr_delay": arr_delay,
                    "carrier": carriers[rng.integers(0, len(carriers), n)],
                    "flight": rng.integers(1, 10_000, n),
                    "tailnum": np.char.add("N", rng.integers(100, 99_999, n).astype(str)),
                    "origin": origins[rng.integers(0, 3, n)],
                    "dest": dests[rng.integers(0, len(dests), n)],
                    "air_time": rng.integers(30, 400, n).astype(float),
                    "distance": rng.integers(100, 3000, n),
                    "hour": hour,
                    "minute": minute,
                }
            ).with_columns(ts.alias("time_hour"))
            df = df.with_columns(pl.col("time_hour").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
            df.write_csv(fh, include_header=first)
            first, rows = False, rows + n
    return rows


def _project(root: Path, name: str, data: Path) -> Path:
    d = root / name
    (d / "contracts").mkdir(parents=True)
    shutil.copy(_EXAMPLE / "contracts" / "flights.yaml", d / "contracts" / "flights.yaml")
    (d / "steward.yaml").write_text(
        "project: bench\nstorage: {root: .steward}\n"
        "sources:\n  flights:\n    path: landing/flights\n    format: csv\n    pattern: '*.csv'\n    contract: flights\n"
        "contracts:\n  flights: contracts/flights.yaml\n"
    )
    (d / "landing" / "flights").mkdir(parents=True)
    os.link(data, d / "landing" / "flights" / data.name)
    return d


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _measure(cmd: list[str], kill_gb: float) -> tuple[float, float, int, str]:
    """Run ``cmd``; return ``(wall s, peak RSS GiB, exit code, last output line)``; kill it past ``kill_gb``."""
    env = {**os.environ, "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    killed = threading.Event()
    hwm = [0]

    def watch() -> None:
        # VmHWM is the child's own high-water mark (reset by exec); wait4's ru_maxrss is not: Linux
        # carries the parent's maximum across fork, which would floor every figure at this script's size
        while proc.poll() is None:
            hwm[0] = max(hwm[0], _status_kb(proc.pid, "VmHWM"))
            if _status_kb(proc.pid, "VmRSS") > kill_gb * (1 << 20):
                killed.set()
                proc.send_signal(signal.SIGKILL)
                return
            time.sleep(0.1)

    threading.Thread(target=watch, daemon=True).start()
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    _, status, _usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    last = f"KILLED over {kill_gb} GiB" if killed.is_set() else (lines[-1][:160] if lines else "")
    return wall, hwm[0] / (1 << 20), code, last


def main() -> None:
    ap = argparse.ArgumentParser(description="Peak memory of steward pipeline run on big files, against the naive path.")
    ap.add_argument("--gb", type=float, default=1.0, help="size of the valid flights file (GiB)")
    ap.add_argument("--junk-mb", type=int, default=100, help="size of the junk file (MiB)")
    ap.add_argument("--kill-gb", type=float, default=8.0, help="kill a run whose RSS passes this (the machine is shared)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="steward-bench-") as tmp:
        root = Path(tmp)
        junk, valid = root / "2013-01-01.csv", root / "2013-01-02.csv"
        t0 = time.perf_counter()
        _junk(junk, args.junk_mb)
        rows = _flights(valid, args.gb)
        print(
            f"generated {junk.stat().st_size >> 20} MiB junk, {valid.stat().st_size >> 20} MiB flights ({rows:,} rows) in {time.perf_counter() - t0:.0f}s"
        )
        peak: dict[str, float] = {}
        for label, data in (("junk", junk), ("flights", valid)):
            proj = _project(root, label, data)
            steward = [sys.executable, "-m", "steward", "--spec", str(proj), "pipeline", "run"]
            wall, rss, code, last = _measure(steward, args.kill_gb)
            peak[f"steward-{label}"] = rss
            print(f"steward pipeline run  {label:8s} wall {wall:7.1f}s  peak RSS {rss:6.2f} GiB  exit {code}  | {last}")
            quarantine = [sys.executable, "-m", "steward", "--spec", str(proj), "data", "quarantine", "--limit", "3"]
            wall, rss, code, last = _measure(quarantine, args.kill_gb)
            print(f"steward data quarantine --limit 3 {label:8s} wall {wall:7.1f}s  peak RSS {rss:6.2f} GiB  exit {code}")
            wall, rss, code, last = _measure([sys.executable, "-c", _PEER, str(data)], args.kill_gb)
            peak[f"peer-{label}"] = rss
            print(f"peer read_csv+pandera {label:8s} wall {wall:7.1f}s  peak RSS {rss:6.2f} GiB  exit {code}  | {last}")
        print(f"ratio: {peak['peer-flights'] / peak['steward-flights']:.2f}")


if __name__ == "__main__":
    main()
