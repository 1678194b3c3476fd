"""The demo's stages before and after production: data, features, training, RAG, the agent, the summary.

Each stage narrates through the :class:`~steward.demo.DemoReporter` and re-uses what exists
(landing is content addressed, ingest is idempotent, a champion is kept), so a second run is
fast and says so. Operations (train, gate, promote) go through :mod:`steward.ops`, as the CLI's do.
"""

from __future__ import annotations

import asyncio
from typing import Any

from steward import ops
from steward.data import run_pipeline
from steward.demo._types import DEMO_ACTOR, DemoOptions, DemoReporter, DemoSummary, fmt
from steward.examples.lander import land
from steward.features import build_features, materialize
from steward.llm.agent import Agent, scripted_spec
from steward.llm.agent.scripted import ScriptedServer
from steward.llm.gateway import cost_report
from steward.llm.rag import ask, ingest
from steward.registry import get_alias_version, list_models
from steward.workspace import Workspace

__all__ = ["agent_stage", "data_stage", "features_stage", "rag_stage", "summary_stage", "training_stage"]


def data_stage(ws: Workspace, options: DemoOptions, reporter: DemoReporter, summary: DemoSummary) -> None:
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


def features_stage(ws: Workspace, reporter: DemoReporter, summary: DemoSummary) -> None:
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


def training_stage(ws: Workspace, reporter: DemoReporter, summary: DemoSummary) -> None:
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
    result = ops.train(ws, progress=reporter.progress)
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
            ["fairness gap (origin)", fmt((result.fairness or {}).get("gap"))],
            ["data versions", ", ".join(f"{k}@{v}" for k, v in sorted(result.data_versions.items()))],
        ],
    )
    verdict = ops.run_gate(ws, name, version=result.version)
    summary_checks = [c for c in verdict.checks if not c.name.startswith("slice.")]
    slices = [c for c in verdict.checks if c.name.startswith("slice.")]
    checks = [[c.name, "pass" if c.passed else "FAIL", fmt(c.challenger), fmt(c.threshold)] for c in summary_checks]
    if slices:
        worst = min(slices, key=lambda c: c.challenger if c.challenger is not None else float("inf"))
        passed = sum(c.passed for c in slices)
        checks.append(
            [
                f"slices ({passed}/{len(slices)} pass; worst {worst.name[6:]})",
                "pass" if passed == len(slices) else "FAIL",
                fmt(worst.challenger),
                fmt(worst.threshold),
            ]
        )
    checks += [[c.name, "FAIL", fmt(c.challenger), fmt(c.threshold)] for c in slices if not c.passed][:5]
    reporter.table(
        f"Gate for v{result.version}: {'PASSED' if verdict.passed else 'FAILED'}", ["check", "result", "value", "threshold"], checks
    )
    summary.gates.append(f"v{result.version}: {'passed' if verdict.passed else 'failed'}")
    if verdict.passed and result.version is not None:
        ops.promote(ws, name, result.version, reason="demo: first model passed the gate on absolute thresholds", actor=DEMO_ACTOR)
        summary.champion = f"{name}@{result.version}"
        reporter.note(f"{name} v{result.version} is now the champion. Model card: {result.card_path}")


DEMO_QUESTIONS = (
    "How do I parse a JSON document from a string?",
    "How can I count how many times each element occurs in a list?",
)


def rag_stage(ws: Workspace, reporter: DemoReporter, summary: DemoSummary) -> None:
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


def agent_stage(ws: Workspace, reporter: DemoReporter, summary: DemoSummary) -> None:
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


def summary_stage(ws: Workspace, reporter: DemoReporter, summary: DemoSummary) -> None:
    reporter.stage("Summary", "What happened, and where to look.")
    name = ws.spec.model.name
    paths = ops.monitor_report(ws, model=name)
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
