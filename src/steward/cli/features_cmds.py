"""``steward features build | materialize | list``: gold feature tables and the online store."""

from __future__ import annotations

from typing import Annotated

import typer

from steward.cli.app import console, features_app, workspace

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the features commands to the shared ``features`` group."""
    features_app.command("build")(build)
    features_app.command("materialize")(materialize)
    features_app.command("list")(list_tables)


def build(
    table: Annotated[list[str] | None, typer.Option("--table", "-t", help="Build only this table (repeatable).")] = None,
) -> None:
    """Compute the gold feature tables from their sources (one Delta commit per changed table)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from steward.features import build_features, feature_set

    ws = workspace()
    names = table or list(feature_set(ws).tables)
    results = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console(), transient=True) as progress:
        task = progress.add_task("building", total=len(names))
        for name in names:
            progress.update(task, description=f"building gold.{name}")
            results += build_features(ws, [name])
            progress.advance(task)
    out = Table(title="gold feature tables", title_justify="left")
    for col in ("table", "source", "rows", "changed", "seconds"):
        out.add_column(col, justify="right" if col in ("rows", "seconds") else "left")
    for r in results:
        out.add_row(str(r.table), str(r.source), f"{r.rows:,}", "yes" if r.changed else "no (unchanged)", f"{r.seconds:.2f}")
    console().print(out)


def materialize(
    as_of: Annotated[str | None, typer.Option("--as-of", help="ISO time the values hold at (default: the latest event).")] = None,
) -> None:
    """Write every entity's latest feature values to the online store (SQLite, or Redis by config)."""
    from rich.table import Table

    from steward._primitives import to_utc
    from steward.errors import ValidationFailed
    from steward.features import materialize as do_materialize

    when = None
    if as_of:
        try:
            when = to_utc(as_of)
        except ValueError:
            raise ValidationFailed(f"--as-of {as_of!r} is not an ISO time", hint="e.g. 2013-12-31T23:00:00Z") from None
    with console().status("materializing"):
        res = do_materialize(workspace(), as_of=when)
    out = Table(title=f"online store {res.store} (as of {res.as_of.isoformat()})", title_justify="left")
    out.add_column("table")
    out.add_column("gold version")
    out.add_column("entities", justify="right")
    for ref in res.inputs:
        out.add_row(ref.name, str(ref.version), f"{res.entities[ref.name]:,}")
    console().print(out)


def list_tables() -> None:
    """List feature tables: entity, keys, features and their gold version."""
    from rich.table import Table

    from steward.features import list_feature_tables

    out = Table(title="feature tables", title_justify="left")
    for col in ("table", "entity", "keys", "kind", "source", "features", "gold version", "rows"):
        out.add_column(col, justify="right" if col == "rows" else "left")
    for t in list_feature_tables(workspace()):
        out.add_row(
            t["name"],
            t["entity"],
            ", ".join(t["keys"]),
            t["kind"],
            t["source"],
            ", ".join(t["features"] or []) or "(built on first run)",
            "-" if t["gold_version"] is None else str(t["gold_version"]),
            "-" if t["rows"] is None else f"{t['rows']:,}",
        )
    console().print(out)
