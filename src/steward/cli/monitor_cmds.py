"""``steward monitor``: run the policies once, write reports, build reference profiles, print alert rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from steward.cli.app import console, monitor_app, workspace

__all__ = ["register"]


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def register(app: typer.Typer) -> None:
    """Add the ``monitor`` commands (to the shared ``monitor_app`` group)."""

    # bare `steward monitor` runs one pass, like `steward monitor run` (the group's help stays on --help)
    @monitor_app.callback(invoke_without_command=True, no_args_is_help=False)
    def monitor(ctx: typer.Context) -> None:
        """Drift, performance and SLO checks (without a subcommand: one pass, as 'steward monitor run')."""
        if ctx.invoked_subcommand is None:
            run()

    @monitor_app.command("run")
    def run(
        model: Annotated[
            str | None, typer.Option("--model", "-m", help="Model to check (default: every model in the prediction log).")
        ] = None,
        version: Annotated[str | None, typer.Option("--version", help="Model version (default: the newest logged).")] = None,
        profile: Annotated[Path | None, typer.Option("--profile", help="Reference profile JSON (default: the model version's).")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON.")] = False,
        fail_on_breach: Annotated[bool, typer.Option("--fail-on-breach", help="Exit with code 3 when any policy is breached.")] = False,
    ) -> None:
        """Evaluate every policy once on the latest window and record the verdicts."""
        from steward import ops
        from steward.monitoring import load_profile

        reference = load_profile(profile) if profile else None
        verdicts = ops.run_monitor(workspace(), model, version=version, reference=reference)
        if not verdicts:
            console().print("no predictions logged yet: nothing to monitor")
            return
        if as_json:
            typer.echo(json.dumps([v.to_dict() for v in verdicts], default=str))
        else:
            from rich.table import Table

            for v in verdicts:
                t = Table(title=f"{v.model} v{v.version}: {v.status} ({v.n_rows} rows)", title_justify="left")
                for head in ("policy", "column", "detector", "value", "threshold", "status"):
                    t.add_column(head)
                for c in v.checks:
                    if c.status in ("breach", "warn") or len(v.checks) <= 30:
                        t.add_row(
                            c.policy, c.column, c.detector, "n/a" if c.value is None else f"{c.value:.4g}", f"{c.threshold:g}", c.status
                        )
                console().print(t)
                for a in v.actions:
                    console().print(
                        f"[bold]action[/bold] {a.action}: {a.reason}" + (f" (runbook: {a.runbook})" if a.runbook else ""), markup=True
                    )
        if fail_on_breach and any(v.status == "breach" for v in verdicts):
            raise typer.Exit(3)

    @monitor_app.command("report")
    def report(
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Output directory (default: ROOT/reports).")] = None,
        model: Annotated[str | None, typer.Option("--model", "-m", help="Only this model.")] = None,
    ) -> None:
        """Write the HTML report (plots inline) and the JSON report from the recorded verdicts."""
        from steward import ops

        paths = ops.monitor_report(workspace(), out, model=model)
        console().print(f"[green]wrote[/green] {paths.html}\n[green]wrote[/green] {paths.json}")

    @monitor_app.command("profile")
    def profile_cmd(
        table: Annotated[str, typer.Option("--table", "-t", help="Reference data, e.g. gold.training_set@3.")],
        model: Annotated[str, typer.Option("--model", "-m", help="Model name.")],
        version: Annotated[str, typer.Option("--version", help="Model version the profile belongs to.")],
        features: Annotated[str, typer.Option("--features", "-f", help="Comma-separated feature columns.")],
        categorical: Annotated[str | None, typer.Option("--categorical", "-c", help="Comma-separated categorical features.")] = None,
        prediction_col: Annotated[str | None, typer.Option("--prediction-col", help="Column holding the model's predictions.")] = None,
        target_expr: Annotated[
            str | None, typer.Option("--target", help="Target column or SQL expression, e.g. 'arr_delay >= 15'.")
        ] = None,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the profile JSON here.")] = None,
    ) -> None:
        """Build a reference profile from a lake table and store it for a model version."""
        import polars as pl

        from steward.monitoring import build_reference_profile, save_profile, store_profile

        ws = workspace()
        mspec = ws.spec.monitoring
        frame = ws.lake.read(table)
        pred = frame.get_column(prediction_col).to_numpy() if prediction_col else None
        target = frame.select(pl.sql_expr(target_expr).cast(pl.Int8)).to_series().to_numpy() if target_expr else None
        prof = build_reference_profile(
            frame, _split(features), _split(categorical), pred, target, bins=mspec.bins, sample_size=mspec.reference_sample,
            meta={"source": str(ws.lake.pin(table))},
        )  # fmt: skip
        path = store_profile(ws, prof, model, version)
        if out:
            save_profile(prof, out)
        console().print(f"[green]profiled[/green] {prof.n_rows} rows, {len(prof.columns)} features → {path}")

    @monitor_app.command("rules")
    def rules(out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None) -> None:
        """Print Prometheus alerting rules for the spec's policies and SLOs (with runbook links)."""
        import yaml

        from steward.monitoring import prometheus_rules

        text = yaml.safe_dump(prometheus_rules(workspace().spec), sort_keys=False)
        if out:
            out.write_text(text, encoding="utf-8")
            console().print(f"[green]wrote[/green] {out}")
        else:
            typer.echo(text)
