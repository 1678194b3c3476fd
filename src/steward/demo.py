"""``steward demo``: the whole story on the flights example, stage by stage.

The demo is library code that narrates through a :class:`DemoReporter`; the CLI
renders it with Rich. Each stage re-uses what exists (landing is content
addressed, ingest is idempotent), so a second run is fast and says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from steward._primitives import make_actor
from steward.spec import SPEC_FILENAME

__all__ = ["DemoOptions", "DemoReporter", "DemoSummary", "run_demo"]

logger = logging.getLogger(__name__)

DEMO_ACTOR = make_actor("system", "demo")


class DemoReporter(Protocol):
    """How the demo talks to a person (the CLI implements it with Rich)."""

    def stage(self, title: str, narrative: str) -> None:
        """A new stage begins."""

    def progress(self, stage: str, done: int, total: int | None, /) -> None:
        """Progress of long work inside a stage (a :class:`~steward._primitives.Progress`: a step, or a count)."""

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A small result table."""

    def note(self, text: str) -> None:
        """One line of narrative."""


@dataclass
class DemoOptions:
    """What the demo does.

    Attributes:
        directory: The project directory (created from the flights example if missing).
        quick: A shorter run for CI (January instead of January–June).
    """

    directory: Path = Path("demo")
    quick: bool = False

    @property
    def train_window(self) -> tuple[date, date]:
        """The landing window for the first model: January–June (quick: January)."""
        return (date(2013, 1, 1), date(2013, 1, 31)) if self.quick else (date(2013, 1, 1), date(2013, 6, 30))


@dataclass
class DemoSummary:
    """What the demo did, for the final summary."""

    spec_path: Path | None = None
    landed_files: int = 0
    reused_files: int = 0
    accounting: dict[str, dict[str, int]] = field(default_factory=dict)
    table_versions: dict[str, int] = field(default_factory=dict)
    training_rows: int = 0
    champion: str | None = None
    gates: list[str] = field(default_factory=list)
    mlflow_ui: str | None = None
    rag_answers: list[tuple[str, str]] = field(default_factory=list)
    server_url: str | None = None
    requests: int = 0
    request_errors: int = 0
    drift_events: int = 0
    loops: list[str] = field(default_factory=list)
    client_p50_ms: float | None = None
    client_p99_ms: float | None = None
    report_html: Path | None = None
    agent_answer: str | None = None
    llm_spend_usd: float | None = None
    stages: list[tuple[str, float]] = field(default_factory=list)


def _timed(summary: DemoSummary, name: str, fn: Callable[[], None]) -> None:
    t0 = time.perf_counter()
    fn()
    summary.stages.append((name, time.perf_counter() - t0))


def run_demo(options: DemoOptions, reporter: DemoReporter) -> DemoSummary:
    """Run the demo end to end.

    Args:
        options: Where and how much.
        reporter: Receives the narrative, progress and tables.

    Returns:
        A :class:`DemoSummary` of what happened.
    """
    from steward.project import init_project
    from steward.workspace import open_workspace

    summary = DemoSummary()
    spec_path = options.directory / SPEC_FILENAME
    reporter.stage("Project", "The flights example: predict at scheduling time whether a flight arrives 15+ minutes late.")
    if spec_path.exists():
        reporter.note(f"Re-using the existing project at {options.directory}/ (delete it to start over).")
    else:
        init_project(options.directory, "flights")
        reporter.note(f"Created {spec_path} from the bundled flights example.")
    summary.spec_path = spec_path
    ws = open_workspace(spec_path)
    try:
        _timed(summary, "data", lambda: _data_stage(ws, options, reporter, summary))
        _timed(summary, "features", lambda: _features_stage(ws, reporter, summary))
        _timed(summary, "training", lambda: _training_stage(ws, reporter, summary))
        _timed(summary, "production", lambda: _production_stage(ws, options, reporter, summary))
        _timed(summary, "rag", lambda: _rag_stage(ws, reporter, summary))
        _timed(summary, "agent", lambda: _agent_stage(ws, reporter, summary))
        _summary_stage(ws, reporter, summary)
    finally:
        ws.close()
    return summary


def _data_stage(ws: Any, options: DemoOptions, reporter: DemoReporter, summary: DemoSummary) -> None:
    from steward.data import run_pipeline
    from steward.examples.lander import land

    start, end = options.train_window
    reporter.stage(
        "Data",
        f"Upstream drops one CSV per source per day. Landing {start} → {end}; then each file is ingested to bronze "
        "(batch id = content hash), gated by its contract to silver, bad rows to quarantine with the rule they broke.",
    )
    landing = ws.spec.resolve("landing")
    rep = land(landing, start, end, progress=reporter.progress)
    summary.landed_files = len(rep.files)
    summary.reused_files = rep.skipped_existing
    reporter.note(
        f"Landed {len(rep.files)} new files ({rep.skipped_existing} unchanged); the feed carries {rep.malformed_lines} malformed lines, "
        f"{rep.late_rows} late rows and {rep.resent_rows} re-sent rows."
    )
    report = run_pipeline(ws, progress=reporter.progress)
    rows = []
    for source, acc in sorted(report.by_source().items()):
        summary.accounting[source] = dict(acc)
        rows.append([source, acc["read"], acc["silver"], acc["quarantined"], acc["duplicates"], acc.get("late", 0), acc["batches"]])
    reporter.table(
        "Accounting (rows read = silver + quarantined + duplicates)",
        ["source", "read", "silver", "quarantined", "duplicates", "late", "new batches"],
        rows,
    )
    versions = []
    for ref in ws.lake.tables():
        v = ws.lake.version(ref)
        summary.table_versions[ref.table] = v
        versions.append([f"{ref.table}@{v}", ws.lake.count(ref.at(v))])
    reporter.table("Lake tables (pinned versions)", ["table", "rows"], versions)


def _features_stage(ws: Any, reporter: DemoReporter, summary: DemoSummary) -> None:
    from steward.features import build_features, materialize

    reporter.stage(
        "Features",
        "One definition in steward.yaml serves training (point-in-time joins: a value is never from after the event) "
        "and serving (the online store). Gold tables are versioned Delta tables.",
    )
    results = build_features(ws)
    rows = [[str(r.table), str(r.source), r.rows, "built" if r.changed else "unchanged (re-used)"] for r in results]
    reporter.table("Gold feature tables", ["table", "source", "rows", "this run"], rows)
    mat = materialize(ws)
    reporter.note(
        f"Online store ({mat.store}) holds the values as of {mat.as_of:%Y-%m-%d %H:%M} UTC for "
        + ", ".join(f"{n} {k}" for k, n in mat.entities.items())
        + "."
    )


def _training_stage(ws: Any, reporter: DemoReporter, summary: DemoSummary) -> None:
    from steward.registry import get_alias_version, promote, run_gate

    name = ws.spec.model.name
    reporter.stage(
        "Training",
        "Train v1 on the landed months from a pinned training set, tracked in MLflow with the reproducibility triple "
        "(git SHA, data versions, environment lock hash); gate it; promote it to champion.",
    )
    champion = get_alias_version(ws, name, "champion")
    if champion is not None:
        reporter.note(f"{name} v{champion} is already the champion: re-using it (delete the demo directory to retrain).")
        summary.champion = f"{name}@{champion}"
        return
    from steward.training import train

    result = train(ws, progress=reporter.progress)
    summary.training_rows = sum(result.rows.values())
    m = result.metrics
    reporter.table(
        f"{name} v{result.version} (run {result.run_id[:8]})",
        ["check", "value"],
        [
            ["training rows", result.rows.get("train", 0)],
            ["validation rows", result.rows.get("validation", 0)],
            ["ROC AUC", f"{m.get('roc_auc') or 0:.3f}"],
            ["log loss", f"{m.get('log_loss') or 0:.3f}"],
            ["fairness gap (origin)", _fmt((result.fairness or {}).get("gap"))],
            ["data versions", ", ".join(f"{k}@{v}" for k, v in sorted(result.data_versions.items()))],
        ],
    )
    verdict = run_gate(ws, name, version=result.version)
    summary_checks = [c for c in verdict.checks if not c.name.startswith("slice.")]
    slices = [c for c in verdict.checks if c.name.startswith("slice.")]
    checks = [[c.name, "pass" if c.passed else "FAIL", _fmt(c.challenger), _fmt(c.threshold)] for c in summary_checks]
    if slices:
        worst = min(slices, key=lambda c: c.challenger if c.challenger is not None else float("inf"))
        passed = sum(c.passed for c in slices)
        checks.append(
            [
                f"slices ({passed}/{len(slices)} pass; worst {worst.name[6:]})",
                "pass" if passed == len(slices) else "FAIL",
                _fmt(worst.challenger),
                _fmt(worst.threshold),
            ]
        )
    checks += [[c.name, "FAIL", _fmt(c.challenger), _fmt(c.threshold)] for c in slices if not c.passed][:5]
    reporter.table(
        f"Gate for v{result.version}: {'PASSED' if verdict.passed else 'FAILED'}", ["check", "result", "value", "threshold"], checks
    )
    summary.gates.append(f"v{result.version}: {'passed' if verdict.passed else 'failed'}")
    if verdict.passed and result.version is not None:
        promote(ws, name, result.version, reason="demo: first model passed the gate on absolute thresholds", actor=DEMO_ACTOR)
        summary.champion = f"{name}@{result.version}"
        reporter.note(f"{name} v{result.version} is now the champion. Model card: {result.card_path}")


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


DEMO_QUESTIONS = (
    "How do I parse a JSON document from a string?",
    "How can I count how many times each element occurs in a list?",
)


def _rag_stage(ws: Any, reporter: DemoReporter, summary: DemoSummary) -> None:
    from steward.llm.rag import ask, ingest

    reporter.stage(
        "RAG",
        "Retrieval over real documentation no one on the team wrote (the standard library's docstrings): hybrid vector + "
        'keyword search, answers that quote and cite their sources, and "I don\'t know" when retrieval is weak. Offline, '
        "the answer is extractive: no invented text.",
    )
    rep = ingest(ws, "stdlib", progress=reporter.progress)
    reporter.note(
        f"Indexed {rep.documents} documents ({rep.unchanged} unchanged, {rep.added} new): {rep.chunks_total} chunks, "
        f"{rep.chunks_added} embedded this run in {rep.embed_seconds:.1f} s."
    )
    for q in DEMO_QUESTIONS:
        ans = ask(ws, q)
        summary.rag_answers.append((q, ans.text))
        cites = [f"[{c.n}] {c.doc_id} § {c.section}" for c in ans.citations[:3]]
        reporter.table(f"Q: {q}", ["answer"], [[ans.text], *[[c] for c in cites]])


# -- production: serve, replay, monitor, heal -------------------------------------------------


@dataclass
class _Server:
    proc: Any
    base_url: str
    log_path: Path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _demo_keys() -> dict[str, str]:
    """API keys for the demo server, from the environment (generated once per run when unset)."""
    import os
    import secrets

    for name in ("STEWARD_ADMIN_KEY", "STEWARD_APP_KEY", "STEWARD_VIEWER_KEY"):
        os.environ.setdefault(name, secrets.token_urlsafe(24))
    return {"admin": os.environ["STEWARD_ADMIN_KEY"], "app": os.environ["STEWARD_APP_KEY"], "viewer": os.environ["STEWARD_VIEWER_KEY"]}


def _start_server(ws: Any, reporter: DemoReporter) -> _Server:
    import os
    import subprocess
    import sys

    import httpx

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
    import signal

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
    import polars as pl

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
    from concurrent.futures import ThreadPoolExecutor

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
    import re

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
    import threading

    def work() -> None:
        from steward.loop import PollingDriver, run_pending
        from steward.workspace import open_workspace

        lws = open_workspace(ws_path)  # its own connections: the loop runs beside the replay
        try:
            heal.results.extend(run_pending(lws, model=model, driver=PollingDriver(poll_s=1.0), timeout_s=600, actor=DEMO_ACTOR))
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


def _production_stage(ws: Any, options: DemoOptions, reporter: DemoReporter, summary: DemoSummary) -> None:
    from datetime import UTC, datetime, timedelta

    import httpx

    from steward.data import run_pipeline
    from steward.examples.lander import land, load_table
    from steward.features import materialize
    from steward.monitoring import evaluate_policies

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
                verdict = evaluate_policies(ws, name)
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
        import numpy as np

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


def _agent_stage(ws: Any, reporter: DemoReporter, summary: DemoSummary) -> None:
    import asyncio

    from steward.llm.agent import Agent, scripted_spec
    from steward.llm.agent.scripted import ScriptedServer
    from steward.workspace import Workspace

    reporter.stage(
        "Agent",
        "A bounded tool-using agent answers through the gateway's function calling with read-only tools (a viewer's "
        "allow-list); write tools would need an admin's one-time approval. Offline, a scripted planner on 127.0.0.1 "
        "stands in for the model; set llm.agent.model to use a real one.",
    )
    question = f"Show the alias history of {ws.spec.model.name} and its latest drift report."
    with ScriptedServer() as planner:
        aws = Workspace(scripted_spec(ws.spec, planner.url))
        try:
            run = asyncio.run(Agent(aws).run(question, role="viewer", actor=DEMO_ACTOR))
        finally:
            aws.close()
    tools = (
        "; ".join(
            f"{c.tool}({', '.join(f'{k}={v}' for k, v in c.arguments.items())}) → {c.status}, {c.result_size} bytes" for c in run.calls
        )
        or "none"
    )
    summary.agent_answer = run.answer
    reporter.table(
        f"Agent: {question}",
        ["what", "value"],
        [
            ["status", f"{run.status} ({run.stop_reason or 'answered'}) in {len(run.steps)} steps, {run.tokens} tokens"],
            ["tools called (viewer allow-list)", tools],
            ["answer", run.answer or "-"],
        ],
    )


def _summary_stage(ws: Any, reporter: DemoReporter, summary: DemoSummary) -> None:
    from steward.llm.gateway import cost_report
    from steward.monitoring import build_report
    from steward.registry import get_alias_version, list_models

    reporter.stage("Summary", "What happened, and where to look.")
    name = ws.spec.model.name
    paths = build_report(ws, ws.root / "reports", model=name)
    summary.report_html = paths.html
    champion = get_alias_version(ws, name, "champion")
    versions = [m for m in list_models(ws) if getattr(m, "name", name) == name]
    costs = cost_report(ws.metadata)
    summary.llm_spend_usd = costs.total_usd
    verify = ws.audit.verify()
    rows: list[list[Any]] = [
        ["champion", f"{name} v{champion}"],
        ["registered versions", len(versions)],
        ["gates", "; ".join(summary.gates) or "-"],
        ["production requests (errors)", f"{summary.requests} ({summary.request_errors})"],
        ["client latency p50 / p99", f"{summary.client_p50_ms or 0:.1f} / {summary.client_p99_ms or 0:.1f} ms"],
        ["drift breaches", summary.drift_events],
        ["self-healing loops", "; ".join(summary.loops) or "none triggered"],
        [
            "LLM spend (gateway)",
            f"${costs.total_usd:.4f} over {costs.requests} requests; month projection ${costs.projected_month_usd:.2f}",
        ],
        ["audit trail", f"{verify.entries} entries, {'intact' if verify.ok else 'TAMPERED: ' + (verify.problem or '')}"],
    ]
    reporter.table("Summary", ["what", "value"], rows)
    spec = ws.spec.spec_path
    tracking = ws.root / "mlflow.db"
    reporter.note(f"HTML monitoring report: {paths.html} (JSON: {paths.json})")
    reporter.note(f"MLflow UI: .venv/bin/mlflow ui --backend-store-uri sqlite:///{tracking} --port 5000  → http://127.0.0.1:5000")
    reporter.note(
        f"Dashboard: STEWARD_VIEWER_KEY=... .venv/bin/steward --spec {spec} serve --port 8000  → http://127.0.0.1:8000/ "
        "(log in with the viewer key; the demo generated keys for its own server)"
    )
    reporter.note(f"Audit trail: .venv/bin/steward --spec {spec} audit log --model {name}")
