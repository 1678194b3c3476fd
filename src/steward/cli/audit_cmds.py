"""``steward audit verify``, ``steward audit anchor`` and ``steward audit log``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from steward.cli.app import audit_app, console, workspace

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the audit commands to ``audit_app``."""

    @audit_app.command("verify")
    def verify(
        anchor: Annotated[
            str | None,
            typer.Option("--anchor", help="A SEQ:HASH printed earlier by 'steward audit anchor' and kept outside Steward."),
        ] = None,
    ) -> None:
        """Check the whole chain; name the first edited, dropped or reordered entry (exit 12 if any)."""
        # the CLI imports lazily to keep `steward --help` fast
        from steward.governance.audit import AuditAnchor

        kept = AuditAnchor.parse(anchor) if anchor is not None else None
        result = workspace().audit.verify(anchor=kept)
        if result.ok:
            against = f", and holds the external anchor's entry {kept.seq}" if kept else ""
            console().print(f"[green]ok[/green]: {result.entries} entries, chain intact{against}")
            return
        for p in result.problems:
            console().print(f"[red]✗[/red] {p}")
        console().print(f"[bold red]audit trail tampered: first bad entry is #{result.first_bad_seq}[/bold red]")
        raise typer.Exit(12)

    @audit_app.command("anchor")
    def anchor() -> None:
        """Print the trail's head as SEQ:HASH, to keep somewhere Steward cannot write (verify --anchor checks it)."""
        head = workspace().audit.anchor()
        if head is None:
            console().print("[yellow]the audit trail is empty: nothing to anchor yet[/yellow]")
            raise typer.Exit(1)
        # plain print: the line is meant to be copied or piped, without Rich's wrapping
        print(head)

    @audit_app.command("log")
    def log(
        model: Annotated[str | None, typer.Option("--model", "-m", help="Only this model's story.")] = None,
        action: Annotated[str | None, typer.Option("--action", "-a", help="Only actions starting with this.")] = None,
        limit: Annotated[int, typer.Option("--limit", "-n", help="Newest N entries.")] = 50,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    ) -> None:
        """Show audit entries, oldest first."""
        from rich.table import Table

        entries = workspace().audit.entries(model=model, action=action, limit=limit)
        if as_json:
            for e in entries:
                console().print_json(json.dumps(e.body() | {"hash": e.hash}))
            return
        t = Table(title=f"audit trail{f' for {model}' if model else ''}", title_justify="left")
        for c in ("#", "when", "who", "action", "subject", "details"):
            t.add_column(c)
        for e in entries:
            details = e.payload.get("details", {})
            t.add_row(str(e.seq), e.ts[:19], e.actor, e.action, e.subject, json.dumps(details)[:80])
        console().print(t)
