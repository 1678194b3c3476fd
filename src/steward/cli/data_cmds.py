"""``steward ingest``, ``steward pipeline run``, ``steward data history|compact|vacuum|quarantine``.

Thin edge: parse options, call :mod:`steward.data`, render Rich tables. The
library never prints; progress comes back through a callback.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from steward.cli._progress import progress_display
from steward.cli.app import console, data_app, pipeline_app, workspace

if TYPE_CHECKING:
    from steward.data.ingest import IngestReport
    from steward.data.pipeline import PipelineReport

__all__ = ["register"]

_MAX_BATCH_ROWS = 25


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, left: Sequence[str] = ()) -> None:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="left" if c in left else "right", overflow="fold")
    for r in rows:
        # cell text is data, never Rich markup (a file name may contain '[')
        t.add_row(*[Text(_fmt(v)) for v in r])
    console().print(t)


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; write YYYY-MM-DD", param_hint=option) from None


def _print_ingest(report: IngestReport) -> None:
    rows = [(b.batch_id, b.origin, b.status, b.rows_read, b.rows_bronze, b.rows_parse_failed) for b in report.batches]
    _table(
        f"ingest {report.source} (run {report.run_id})",
        ["batch", "file", "status", "rows read", "to bronze", "unparsable"],
        rows,
        left=("batch", "file", "status"),
    )
    new = report.new_batches
    console().print(
        f"{len(new)} new batch(es), {len(report.batches) - len(new)} already landed; "
        f"bronze.{report.source}@{_fmt(report.bronze_version)}"
        + (f", quarantine.{report.source}@{report.quarantine_version}" if report.quarantine_version is not None else "")
    )


def _print_pipeline(report: PipelineReport, *, all_batches: bool = False) -> None:
    from rich.markup import escape

    rows: list[Sequence[Any]] = []
    # a year of daily drops is hundreds of batches: by default show them only when few
    per_batch = all_batches or len(report.batches) <= _MAX_BATCH_ROWS
    for s in report.sources.values():
        for b in s.batches if per_batch else []:
            rows.append(
                (s.source, b.batch_id, b.origin, b.rows_read, b.rows_silver, b.rows_quarantined, b.rows_duplicate, b.rows_late, b.balanced)
            )
        t = s.totals
        if s.batches:
            rows.append(
                (
                    s.source,
                    "(total)",
                    f"{t.batches} batch(es)",
                    t.rows_read,
                    t.rows_silver,
                    t.rows_quarantined,
                    t.rows_duplicate,
                    t.rows_late,
                    t.balanced,
                )
            )
    if rows:
        _table(
            f"pipeline run {report.run_id}: rows read = silver + quarantined + duplicates",
            ["source", "batch", "origin", "read", "silver", "quarantined", "duplicates", "late", "balanced"],
            rows,
            left=("source", "batch", "origin"),
        )
    for s in report.sources.values():
        if s.stream is not None:
            st = s.stream
            console().print(
                f"{s.source}: stream {st.stream} delivered {st.delivered:,}, landed {st.landed:,}, redelivered (dropped) {st.redelivered:,}"
            )
        for w in s.warnings:
            console().print(f"[yellow]warning[/yellow] {s.source}: {escape(w)}")
    if not per_batch:
        console().print(f"{len(report.batches):,} batches (totals per source shown; --batches lists each one)")
    console().print("tables: " + (", ".join(report.refs()) or "none"))
    if not report.batches:
        console().print("nothing new: every batch was already processed")


def register(app: typer.Typer) -> None:
    """Add ``ingest`` (top level), ``pipeline run``, ``pipeline runs``, ``data history`` and ``data quarantine``."""

    @app.command()
    def ingest(
        source: Annotated[str | None, typer.Argument(help="Source to land (a files source from steward.yaml).")] = None,
        all_sources: Annotated[bool, typer.Option("--all", help="Land every files source.")] = False,
        date_from: Annotated[str | None, typer.Option("--from", help="Only files dated on or after YYYY-MM-DD.")] = None,
        date_to: Annotated[str | None, typer.Option("--to", help="Only files dated on or before YYYY-MM-DD.")] = None,
    ) -> None:
        """Land new landing files into bronze (idempotent: a file already landed changes nothing)."""
        from steward.data.ingest import ingest_source

        ws = workspace()
        if source and all_sources:
            raise typer.BadParameter("give a SOURCE or --all, not both")
        if not source and not all_sources:
            raise typer.BadParameter(f"name a SOURCE or pass --all (sources: {', '.join(ws.spec.sources) or 'none'})")
        names = [source] if source else [n for n, s in ws.spec.sources.items() if s.kind == "files"]
        d0, d1 = _date(date_from, "--from"), _date(date_to, "--to")
        with progress_display() as progress:
            reports = [ingest_source(ws, n, date_from=d0, date_to=d1, progress=progress) for n in names]
        for r in reports:
            _print_ingest(r)

    @pipeline_app.command("run")
    def pipeline_run(
        source: Annotated[list[str] | None, typer.Option("--source", help="Source to run (repeatable; default: all).")] = None,
        date_from: Annotated[str | None, typer.Option("--from", help="Backfill from YYYY-MM-DD (files whose name carries a date).")] = None,
        date_to: Annotated[str | None, typer.Option("--to", help="Backfill to YYYY-MM-DD (inclusive).")] = None,
        batches: Annotated[bool, typer.Option("--batches", help="List every batch's accounting, however many.")] = False,
    ) -> None:
        """Ingest and gate bronze → silver; print the accounting per batch and the table versions."""
        from steward.data.pipeline import run_pipeline

        ws = workspace()
        d0, d1 = _date(date_from, "--from"), _date(date_to, "--to")
        with progress_display() as progress:
            report = run_pipeline(ws, sources=source or None, date_from=d0, date_to=d1, progress=progress)
        _print_pipeline(report, all_batches=batches)

    @pipeline_app.command("runs")
    def pipeline_runs(limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs.")] = 20) -> None:
        """Recent ingest and pipeline runs with their status and totals."""
        from steward.data.runs import list_runs

        rows = []
        for r in list_runs(workspace().metadata, limit):
            t = r["summary"].get("totals", {}) if isinstance(r["summary"], dict) else {}
            rows.append(
                (
                    r["run_id"],
                    r["kind"],
                    r["status"],
                    str(r["started_at"])[:19],
                    t.get("rows_read"),
                    t.get("rows_silver"),
                    t.get("rows_quarantined"),
                    t.get("rows_duplicate"),
                )
            )
        _table(
            "pipeline runs",
            ["run", "kind", "status", "started", "read", "silver", "quarantined", "duplicates"],
            rows,
            left=("run", "kind", "status", "started"),
        )

    @data_app.command("history")
    def history(table: Annotated[str, typer.Argument(help="Table, e.g. silver.flights.")]) -> None:
        """Versions of a table: operation, rows written, total rows, the run that wrote it, when."""
        from steward.data.lake import TableRef

        ref = TableRef.parse(table)
        rows = [
            (h["version"], h["operation"], h["rows_written"], h["total_rows"], h["run_id"], h["batch_id"], _when(h["timestamp"]))
            for h in workspace().lake.history(ref)
        ]
        _table(
            f"history of {ref.table}",
            ["version", "operation", "rows written", "total rows", "run", "batch", "timestamp"],
            rows,
            left=("operation", "run", "batch", "timestamp"),
        )

    @data_app.command("compact")
    def compact(table: Annotated[str, typer.Argument(help="Table, e.g. logs.predictions.")]) -> None:
        """Rewrite a table's small files into large ones (one commit; every older version stays readable)."""
        out = workspace().lake.compact(table)
        console().print(f"{out['table']}@{out['version']}: {out['files_removed']} file(s) folded into {out['files_added']}")

    @data_app.command("vacuum")
    def vacuum(
        table: Annotated[str, typer.Argument(help="Table, e.g. logs.predictions.")],
        retention_hours: Annotated[int, typer.Option(min=0, help="Keep files removed from the table less than this long ago.")] = 168,
        yes: Annotated[bool, typer.Option("--yes", help="Delete; without it, only list what would go.")] = False,
        keep_pinned: Annotated[
            bool, typer.Option("--keep-pinned/--no-keep-pinned", help="Keep every version a recorded run read (training sets).")
        ] = True,
    ) -> None:
        """Delete data files old versions no longer need; versions pinned by recorded runs stay readable."""
        ws = workspace()
        out = ws.lake.vacuum(table, retention_hours=retention_hours, dry_run=not yes, keep_pinned=keep_pinned)
        if yes:
            ws.audit.append(
                "data.vacuum",
                f"table:{out['table']}",
                details={"files_deleted": len(out["files"]), "retention_hours": retention_hours, "kept_versions": out["kept_versions"]},
            )
        kept = ", ".join(str(v) for v in out["kept_versions"]) or "none"
        verb = "deleted" if yes else "would delete"
        console().print(f"{out['table']}: {verb} {len(out['files'])} file(s); pinned versions kept: {kept}")
        if not yes and out["files"]:
            console().print("run again with --yes to delete them")

    @data_app.command("quarantine")
    def quarantine(
        batch: Annotated[str | None, typer.Option("--batch", help="Only this batch id.")] = None,
        source: Annotated[str | None, typer.Option("--source", help="Only this source.")] = None,
        rule: Annotated[str | None, typer.Option("--rule", help="Only this rule (e.g. parse, type, not_null).")] = None,
        limit: Annotated[int, typer.Option("--limit", "-n", help="Rows to show.")] = 20,
    ) -> None:
        """Quarantined rows (rule, column, value, reason) and counts by rule."""
        from steward.data.quarantine import quarantine_summary, read_quarantine

        ws = workspace()
        if source:
            ws.spec.source(source)
        # the newest --limit rows (a streaming top-k) and aggregates: never the whole quarantine in memory
        shown = read_quarantine(ws, source=source, batch_id=batch, rule=rule, limit=limit)
        failures, rows, counts = quarantine_summary(ws, source=source, batch_id=batch, rule=rule)
        _table(
            f"quarantine: {failures:,} failure(s) on {rows:,} row(s), showing {shown.height:,}",
            ["source", "batch", "row", "rule", "column", "value", "reason"],
            shown.select("source", "_batch_id", "_row", "rule", "column", "value", "reason").rows(),
            left=("source", "batch", "rule", "column", "value", "reason"),
        )
        _table("by rule", ["source", "rule", "column", "rows", "failures"], counts.rows(), left=("source", "rule", "column"))


def _when(ts: Any) -> str:
    # delta-rs history timestamps are epoch milliseconds
    if isinstance(ts, int | float):
        from datetime import UTC

        return datetime.fromtimestamp(ts / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return _fmt(ts)
