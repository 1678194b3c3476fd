"""``steward rag ingest|ask`` and ``steward llm eval|guard-eval``: thin edges over steward.llm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from steward.cli.app import console, llm_app, rag_app, workspace

__all__ = ["register"]


@rag_app.command("ingest")
def ingest_cmd(
    path: Annotated[Path | None, typer.Argument(help="A directory (or file) of Markdown/HTML/text to index.")] = None,
    stdlib: Annotated[bool, typer.Option("--stdlib", help="Index the Python standard library collection ('stdlib').")] = False,
    collection: Annotated[
        str | None,
        typer.Option("--collection", "-c", help="Collection to write (default: 'docs' for a path; or a declared collection name)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Index a corpus: unchanged documents are skipped, changed ones replaced (content hash)."""
    from steward.cli._progress import progress_display
    from steward.llm.rag import ingest

    ws = workspace()
    if stdlib:
        source: str | Path = "stdlib"
    elif path is not None:
        source = path
    elif collection:
        source = collection
    else:
        raise typer.BadParameter("give a PATH, --stdlib, or --collection NAME")
    with progress_display(enabled=not as_json and console().is_terminal) as progress:
        report = ingest(ws, source, collection=None if stdlib else collection, progress=progress)
    if as_json:
        console().print_json(json.dumps({**vars(report), "chunks_per_second": report.chunks_per_second}))
        return
    console().print(
        f"[bold]{report.collection}[/]: {report.documents} documents — {report.added} added, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.removed} removed; {report.chunks_added} chunks embedded "
        f"({report.chunks_total} in the collection) in {report.seconds:.1f}s"
    )


@rag_app.command("ask")
def ask_cmd(
    question: Annotated[str, typer.Argument(help="The question.")],
    k: Annotated[int | None, typer.Option("-k", help="Sources to retrieve (default llm.rag.top_k).")] = None,
    collection: Annotated[str | None, typer.Option("--collection", "-c", help="Collection (default llm.rag.default_collection).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Answer a question with numbered citations (or "I don't know" when retrieval is weak)."""
    from dataclasses import asdict

    from rich.table import Table

    from steward.llm.rag import ask

    ans = ask(workspace(), question, k=k, collection=collection)
    if as_json:
        body = asdict(ans)
        body.pop("prompt", None)
        console().print_json(json.dumps(body))
        return
    console().print(ans.text, markup=False, highlight=False)
    if ans.citations:
        table = Table(show_header=True, header_style="bold", box=None)
        for col in ("#", "source", "section", "score"):
            table.add_column(col)
        for c in ans.citations:
            table.add_row(f"[{c.n}]", c.doc_id, c.section, f"{c.score:.4f}")
        console().print(table)
    extra = [f"mode={ans.mode}", f"confidence={ans.confidence:.2f}", f"support={ans.support:.2f}", *ans.flags]
    console().print(" ".join(extra), style="dim", markup=False)


def _table(title: str, rows: list[tuple[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, f"{value:.3f}" if isinstance(value, float) else str(value))
    return table


@llm_app.command("eval")
def eval_cmd(
    collection: Annotated[str | None, typer.Option("--collection", "-c", help="Collection (default llm.rag.default_collection).")] = None,
    k: Annotated[int | None, typer.Option("-k", help="Retrieval depth for recall@k and MRR.")] = None,
    eval_set: Annotated[Path | None, typer.Option("--set", help="An eval set (.jsonl); default the shipped stdlib set.")] = None,
    thresholds: Annotated[Path | None, typer.Option("--thresholds", help="Thresholds YAML; default the shipped one.")] = None,
    judge: Annotated[bool, typer.Option("--judge", help="Also grade with an LLM judge (needs llm.rag.model or --judge-model).")] = False,
    judge_model: Annotated[str | None, typer.Option("--judge-model", help="Gateway alias of the judge.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run the RAG eval (recall@k, MRR, faithfulness, answer relevance); exit 1 below a threshold."""
    from steward.llm.evals import check_thresholds, load_eval_set, load_thresholds, run_eval

    items = load_eval_set(eval_set)
    report = run_eval(workspace(), collection=collection, k=k, items=items, judge=judge, judge_model=judge_model)
    floors = load_thresholds(thresholds)
    fails = check_thresholds(report, floors)
    if as_json:
        body = report.as_dict()
        body["failures"] = fails
        console().print_json(json.dumps(body))
    else:
        metrics = report.metrics()
        rows = [(f"{name} (≥ {floors[name]:.2f})" if name in floors else name, v) for name, v in metrics.items() if name != "recall_at_k"]
        rows += [("suggested min_score", report.suggested_min_score), ("configured min_score", report.min_score)]
        rows += [("items", report.items), ("seconds", round(report.seconds, 1))]
        console().print(_table("RAG eval", rows))
        for f in fails:
            console().print(f"below threshold: {f}", style="bold red", markup=False)
    if fails:
        raise typer.Exit(1)


@llm_app.command("guard-eval")
def guard_eval_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False) -> None:
    """Measure each guardrail's catch rate and false-positive rate on its held-out labelled set."""
    from rich.table import Table

    from steward.errors import SpecError
    from steward.llm.guardrails import guard_eval

    try:
        spec = workspace().spec.llm.guardrails
    except SpecError as exc:
        if exc.code != "spec.missing":
            raise
        spec = None  # outside a project: evaluate the default guard settings
    report = guard_eval(spec)
    if as_json:
        console().print_json(json.dumps(report.as_dict()))
        return
    table = Table(title="Guardrails (held-out sets)", header_style="bold")
    for col in ("guard", "catch rate", "false-positive rate", "positives", "negatives", "note"):
        table.add_column(col)
    for m in report.metrics:
        table.add_row(m.guard, f"{m.catch_rate:.3f}", f"{m.false_positive_rate:.3f}", str(m.positives), str(m.negatives), m.note)
    console().print(table)


def register(app: typer.Typer) -> None:
    """Commands are attached to the shared ``rag`` and ``llm`` groups at import time."""
