"""``steward llm costs``: gateway spend by key, model and day, and a monthly projection."""

from __future__ import annotations

from typing import Annotated

import typer

from steward.cli.app import console, llm_app, workspace

__all__ = ["register"]


@llm_app.command("costs")
def costs(
    days: Annotated[int, typer.Option("--days", "-d", min=1, help="Window, in days ending today.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Spend of the LLM gateway by key, model and day, with a projection for the month."""
    from steward.llm.gateway import cost_report

    report = cost_report(workspace().metadata, days=days)
    if as_json:
        import json

        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    from rich.table import Table

    out = console()
    for title, rows in (("by key", report.by_key), ("by model", report.by_model), ("by day", report.by_day)):
        t = Table(title=f"LLM spend {title} since {report.since}", title_justify="left")
        for col in ("name", "requests", "prompt tokens", "completion tokens", "cost (USD)"):
            t.add_column(col, justify="left" if col == "name" else "right")
        for r in rows:
            t.add_row(
                str(r["name"]), f"{r['requests']:,}", f"{r['prompt_tokens']:,}", f"{r['completion_tokens']:,}", f"{r['cost_usd']:.6f}"
            )
        out.print(t)
    out.print(f"total: ${report.total_usd:.6f} over {report.requests:,} requests")
    out.print(f"month to date: ${report.month_to_date_usd:.6f}; projected for the month: ${report.projected_month_usd:.6f}")


def register(app: typer.Typer) -> None:
    """Commands are added to the shared ``llm`` group at import time."""
