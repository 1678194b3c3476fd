"""``steward rollout start|status|promote|abort|weight`` and ``steward score``.

Each rollout command calls one :mod:`steward.ops` function, which writes the rollout in the
metadata store; every running server picks the change up at its next poll
(``POST /v1/admin/reload`` applies it at once). Steward modules are imported inside the
commands so ``steward --help`` stays fast.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from steward.cli.app import console, rollout_app, workspace

__all__ = ["register"]


def _print_state(st: Any, as_json: bool) -> None:
    if as_json:
        console().print_json(json.dumps(st.to_dict(), default=str))
        return
    from rich.table import Table

    c = console()
    c.print(
        f"[bold]{st.model}[/bold] rollout {st.rollout_id}: {st.mode} of v{st.challenger_version} against v{st.champion_version} — "
        f"[bold]{st.state}[/bold] at {st.weight:g}%"
    )
    if st.reason:
        c.print(f"  reason: {st.reason}", markup=False)
    if st.steps:
        table = Table("#", "when", "action", "weight", "by", "reason")
        for s in st.steps:
            table.add_row(str(s["seq"]), s["ts"], s["action"], f"{s['weight']:g}%", s["actor"], s["reason"] or "")
        c.print(table)


@rollout_app.command("start")
def start(
    model: Annotated[str, typer.Argument(help="Registered model name (a key of serving.models, or any model).")],
    mode: Annotated[str | None, typer.Option(help="canary, ab, shadow or bluegreen (default: the spec's policy).")] = None,
    steps: Annotated[str | None, typer.Option(help="Progressive challenger shares, e.g. '5,25,50,100'.")] = None,
    weight: Annotated[float | None, typer.Option(help="Fixed challenger share in percent (A/B, or canary without steps).")] = None,
    sticky_key: Annotated[str | None, typer.Option(help="Request field that keeps a caller on one variant.")] = None,
    window: Annotated[float | None, typer.Option(help="Seconds each step is watched before it may advance.")] = None,
    challenger_alias: Annotated[str | None, typer.Option(help="Registry alias of the challenger.")] = None,
    manual: Annotated[bool, typer.Option("--manual", help="Do not advance or roll back automatically.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Start rolling out the challenger against the champion (policy from steward.yaml, overridden by options)."""
    from steward import ops

    overrides: dict[str, Any] = {
        "mode": mode,
        "weight": weight,
        "sticky_key": sticky_key,
        "step_window_s": window,
        "challenger_alias": challenger_alias,
        "steps": [float(s) for s in steps.split(",") if s.strip()] if steps else None,
        "auto": False if manual else None,
    }
    _print_state(ops.start_rollout(workspace(), model, overrides), as_json)


@rollout_app.command("status")
def status(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The latest rollout of MODEL with every recorded step."""
    from steward import ops

    st = ops.rollout_status(workspace(), model, must_exist=True).rollout
    assert st is not None  # must_exist
    _print_state(st, as_json)


@rollout_app.command("promote")
def promote(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "promoted by operator",
    force: Annotated[bool, typer.Option(help="Promote without a passing gate verdict (recorded).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Make the challenger the champion (through the registry's gate) and finish the rollout."""
    from steward import ops

    _print_state(ops.promote_rollout(workspace(), model, reason=reason, force=force), as_json)


@rollout_app.command("abort")
def abort(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "aborted by operator",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Stop the rollout: all traffic back to the champion."""
    from steward import ops

    _print_state(ops.abort_rollout(workspace(), model, reason=reason), as_json)


@rollout_app.command("weight")
def set_weight(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    percent: Annotated[float, typer.Argument(min=0, max=100, help="Challenger share; blue/green: 100 = green, 0 = back to blue.")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Set the challenger share by hand (the blue/green switch and switch back)."""
    from steward import ops

    _print_state(ops.set_rollout_weight(workspace(), model, percent, reason=reason), as_json)


def score(
    model: Annotated[str, typer.Option("--model", help="NAME@ALIAS or NAME@VERSION.")],
    input_ref: Annotated[str, typer.Option("--input", help="Input table: layer.name[@version].")],
    output_ref: Annotated[str, typer.Option("--output", help="Output table: layer.name (replaced).")],
    chunk_rows: Annotated[int, typer.Option(min=1, help="Rows per chunk (the memory bound).")] = 50_000,
    engine: Annotated[str, typer.Option(help="local or ray.")] = "local",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Score a lake table with a registered model, chunk by chunk, into another table."""
    from steward.cli._progress import progress_display
    from steward.errors import ValidationFailed
    from steward.serving.scoring import score as run_score

    if engine not in ("local", "ray"):
        raise ValidationFailed(f"unknown engine {engine!r}", hint="use --engine local or --engine ray")
    with progress_display() as progress:
        result = run_score(workspace(), model, input_ref, output_ref, chunk_rows=chunk_rows, engine=engine, progress=progress)  # type: ignore[arg-type]
    if as_json:
        console().print_json(json.dumps(result.to_dict()))
    else:
        console().print(
            f"scored {result.rows} rows of {result.input} with {result.model} v{result.version} into {result.output}"
            f" (version {result.output_version}) in {result.chunks} chunks, {result.seconds:.1f} s"
        )


def register(app: typer.Typer) -> None:
    """Add ``steward score`` (the rollout group's commands register on import)."""
    app.command("score")(score)
