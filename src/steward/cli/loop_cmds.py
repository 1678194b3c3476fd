"""``steward loop`` (run the self-healing loop) and ``steward loop history``.

Without ``--trigger`` the loop carries out the monitor's pending actions (a crashed
loop is resumed first); with ``--trigger TEXT`` it runs one loop for the model now.
``--no-rollout`` gates and then promotes directly, for projects without a serving
process or rollout policy.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from steward.cli._progress import progress_display
from steward.cli.app import console, workspace

__all__ = ["register"]

loop_app = typer.Typer(
    help="The self-healing loop: retrain → gate → rollout → promote or roll back.", invoke_without_command=True, no_args_is_help=False
)

_COLOURS = {"promoted": "green", "rolled_back": "yellow", "champion_kept": "yellow", "aborted": "red"}


def _print_result(res: Any) -> None:
    c = console()
    colour = _COLOURS.get(res.outcome, "white")
    resumed = " (resumed)" if res.resumed else ""
    c.print(f"[bold]{res.model}[/bold] loop {res.loop_id}{resumed} [{res.trigger}]: [bold {colour}]{res.outcome}[/bold {colour}]")
    c.print(f"  {res.reason}", markup=False)
    for s in res.steps:
        c.print(f"  {s.step:<13} {s.status:<8} {s.note}", markup=False)


@loop_app.callback()
def loop(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="Registered model name (default: model.name of steward.yaml).")] = None,
    trigger: Annotated[
        str | None, typer.Option(help="Run one loop now, recording this trigger; without it, carry out pending monitor actions.")
    ] = None,
    no_rollout: Annotated[
        bool, typer.Option("--no-rollout", help="Gate, then promote directly (no serving process or rollout policy needed).")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Longest wait in seconds for the rollout to finish (then it is aborted).")] = 3600.0,
    poll: Annotated[float, typer.Option(help="Seconds between polls of the rollout's state.")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run the self-healing loop (exit code 1 when a loop ends aborted)."""
    if ctx.invoked_subcommand is not None:
        return
    from steward import ops

    with progress_display(enabled=not as_json) as progress:
        # an explicit trigger runs one loop now; without one, the monitor's pending actions decide
        results = ops.run_loop(
            workspace(), model=model, trigger=trigger, rollout=not no_rollout, poll_s=poll, timeout_s=timeout, progress=progress
        )
    if as_json:
        console().print_json(json.dumps([r.to_dict() for r in results], default=str))
    elif not results:
        console().print(
            "nothing to do: no pending retrain, shadow-then-promote or rollback actions (use --trigger TEXT to run one loop now)"
        )
    else:
        for r in results:
            _print_result(r)
    if any(r.outcome == "aborted" for r in results):
        raise typer.Exit(1)


@loop_app.command("history")
def history(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    limit: Annotated[int, typer.Option(help="Most loops shown.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Past loops, newest first: trigger, state, outcome, reason and steps."""
    from steward.loop import loop_history

    runs = loop_history(workspace(), model, limit=limit)
    if as_json:
        console().print_json(json.dumps([r.to_dict() for r in runs], default=str))
        return
    c = console()
    if not runs:
        c.print("no loops yet")
    for r in runs:
        # one line per loop (wide reasons wrap badly in a table), then its steps
        status = r.outcome or f"{r.state} at {r.step}"
        c.print(f"{r.loop_id}  {r.model}  [{r.trigger}]  {r.started_at[:19]}  {status}: {r.reason or ''}", markup=False, highlight=False)
        for s in r.context.get("steps", []):
            c.print(f"    {s['step']:<13} {s['status']:<8} {s.get('note', '')}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``steward loop`` to the app."""
    app.add_typer(loop_app, name="loop")
