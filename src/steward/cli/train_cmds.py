"""``steward train / reproduce / gate / promote / rollback / card`` and ``steward registry list|history``.

Thin edge over :mod:`steward.ops` (operations) and :mod:`steward.registry` (listings): parse,
call, print Rich tables. Errors propagate as StewardError (one red line and the error's exit
code: a failed gate exits 12, a run that does not reproduce 13). Steward modules are imported
inside the commands so ``steward --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import typer

from steward._primitives import format_value
from steward.cli._progress import progress_display
from steward.cli.app import console, registry_app, workspace

__all__ = ["register"]

logger = logging.getLogger(__name__)


def _quiet_optuna() -> None:
    # Optuna logs every trial at INFO through its own handler; the CLI keeps it to warnings
    # unless --verbose configured INFO logging.
    if logging.getLogger().level > logging.INFO:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)


def train_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Build the pinned training set, train (and search), track in MLflow, register as challenger."""
    from rich.table import Table

    from steward import ops

    _quiet_optuna()
    out = console()
    with progress_display(enabled=not as_json) as progress:
        result = ops.train(workspace(), progress=progress)
    if as_json:
        out.print_json(json.dumps(result.to_dict(), default=str))
        return
    table = Table(title=f"{result.model_name} v{result.version} (run {result.run_id})", title_justify="left")
    table.add_column("metric")
    table.add_column("validation", justify="right")
    for k, v in result.metrics.items():
        table.add_row(k, format_value(v))
    out.print(table)
    for col, groups in result.slice_metrics.items():
        # the slice metrics are the task's own (roc_auc for binary, rmse/mae for regression, f1_macro...)
        names = sorted({k for e in groups.values() for k, v in e.items() if k != "n" and isinstance(v, int | float)})
        st = Table(title=f"by {col}", title_justify="left")
        for head in (col, "n", *names):
            st.add_column(head, justify="left" if head == col else "right")
        for g, e in groups.items():
            st.add_row(g, str(e["n"]), *(format_value(e.get(name)) for name in names))
        out.print(st)
    if result.fairness:
        f = result.fairness
        out.print(f"fairness: largest {f['metric']} gap across {f['column']} = {format_value(f['gap'])} (limit {f['max_gap']})")
    inputs = ", ".join(f"{k}@{v}" for k, v in sorted(result.data_versions.items()))
    out.print(f"data: {inputs or 'no pinned inputs'}; rows {result.rows.get('train')} train / {result.rows.get('validation')} validation")
    out.print(f"card: {result.card_path}")
    out.print(f"[green]registered {result.model_name} v{result.version} as challenger[/green]; next: steward gate {result.model_name}")


def reproduce_cmd(
    run_id: Annotated[str, typer.Argument(help="The MLflow run id to reproduce.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Rebuild a run's training set from its pins, retrain, and compare validation prediction hashes."""
    from steward import ops

    res = ops.reproduce(workspace(), run_id, strict=False)
    out = console()
    if as_json:
        out.print_json(json.dumps(res.to_dict(), default=str))
    else:
        out.print(f"data: {', '.join(f'{k}@{v}' for k, v in sorted(res.data_versions.items()))}")
        out.print(f"code: then {res.git_then}, now {res.git_now}")
        out.print(f"env:  then {res.env_hash_then[:16]}, now {res.env_hash_now[:16]}")
        out.print(f"predictions: original {res.original_hash[:16]}, reproduced {res.new_hash[:16]} (run {res.reproduce_run_id})")
    res.raise_for_mismatch()  # the library's verdict: NotReproducible, exit code 13
    if not as_json:
        out.print("[green]reproduced: identical validation predictions[/green]")


def gate_cmd(
    name: Annotated[str | None, typer.Argument(help="Model name (default: model.name from the spec).")] = None,
    version: Annotated[int | None, typer.Option("--version", help="Gate this version instead of the challenger.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Gate the challenger against the champion: main metric, every slice, fairness, p99 latency."""
    from rich.table import Table

    from steward import ops

    verdict = ops.run_gate(workspace(), name, version=version)
    out = console()
    if as_json:
        out.print_json(json.dumps(verdict.to_dict(), default=str))
    else:
        against = f"champion v{verdict.champion_version}" if verdict.champion_version else "absolute thresholds (no champion)"
        table = Table(title=f"gate: {verdict.model_name} v{verdict.challenger_version} vs {against}", title_justify="left")
        for col in ("check", "result", "challenger", "champion", "threshold", "detail"):
            table.add_column(col, justify="right" if col in ("challenger", "champion", "threshold") else "left")
        for c in verdict.checks:
            table.add_row(
                c.name,
                "[green]pass[/green]" if c.passed else "[bold red]FAIL[/bold red]",
                format_value(c.challenger),
                format_value(c.champion),
                format_value(c.threshold),
                c.detail,
            )
        out.print(table)
    verdict.raise_for_failure()
    if not as_json:
        out.print(f"[green]gate passed[/green]; next: steward promote {verdict.model_name} {verdict.challenger_version} --reason ...")


def promote_cmd(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version to make champion.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (recorded with who and when).")],
    actor: Annotated[str | None, typer.Option("--actor", help="Who (default $STEWARD_ACTOR or the OS user).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote without a passing gate verdict (recorded).")] = False,
) -> None:
    """Make VERSION the champion; the old champion becomes 'previous'."""
    from steward import ops

    _print_changes(ops.promote(workspace(), name, version, reason=reason, actor=actor, force=force).changes)


def rollback_cmd(
    name: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (recorded with who and when).")],
    actor: Annotated[str | None, typer.Option("--actor", help="Who (default $STEWARD_ACTOR or the OS user).")] = None,
) -> None:
    """Champion ← previous."""
    from steward import ops

    _print_changes(ops.rollback(workspace(), name, reason=reason, actor=actor).changes)


def _print_changes(changes: list[Any]) -> None:
    out = console()
    for c in changes:
        before = f"v{c.from_version}" if c.from_version is not None else "(unset)"
        after = f"v{c.to_version}" if c.to_version is not None else "(unset)"
        out.print(f"{c.model_name}@{c.alias}: {before} → {after}  [dim]({c.action} by {c.actor}: {c.reason})[/dim]")


def card_cmd(
    ref: Annotated[str, typer.Argument(help="NAME[@ALIAS|@VERSION]; default alias: champion, else challenger.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the card's JSON.")] = False,
) -> None:
    """Print a version's model card."""
    from rich.markdown import Markdown

    from steward.errors import NotFound
    from steward.registry import get_alias_version, read_card, resolve_version

    ws = workspace()
    name, _, alias = ref.partition("@")
    if alias:
        version = resolve_version(ws, name, alias)
    else:
        found = get_alias_version(ws, name, "champion") or get_alias_version(ws, name, "challenger")
        if found is None:
            raise NotFound(f"model {name} has neither a champion nor a challenger", hint=f"use {name}@VERSION")
        version = found
    md, card = read_card(ws, name, version)
    if as_json:
        console().print_json(json.dumps(card, default=str))
    else:
        console().print(Markdown(md))


def list_cmd(
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Registered model versions with their aliases, main metric and gate result."""
    from rich.table import Table

    from steward.registry import list_models

    rows = list_models(workspace(), name)
    if as_json:
        console().print_json(json.dumps([r.to_dict() for r in rows], default=str))
        return
    table = Table(title="registered models", title_justify="left")
    for col in ("model", "version", "aliases", "metric", "gate", "run", "created"):
        table.add_column(col, justify="right" if col == "version" else "left")
    for r in rows:
        metric = f"{r.metric} {format_value(r.metric_value)}" if r.metric else ""
        table.add_row(r.name, str(r.version), ", ".join(r.aliases), metric, r.gate or "", r.run_id or "", r.created_at)
    console().print(table)


def history_cmd(
    name: Annotated[str, typer.Argument(help="Model name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Every alias change of a model: who, when, why."""
    from rich.table import Table

    from steward.registry import alias_history

    changes = alias_history(workspace(), name)
    if as_json:
        console().print_json(json.dumps([c.to_dict() for c in changes], default=str))
        return
    table = Table(title=f"alias history: {name}", title_justify="left")
    for col in ("when", "alias", "from", "to", "action", "who", "why"):
        table.add_column(col)
    for c in changes:
        table.add_row(c.created_at, c.alias, format_value(c.from_version), format_value(c.to_version), c.action, c.actor, c.reason)
    console().print(table)


def register(app: typer.Typer) -> None:
    """Add the training and registry commands to the app."""
    app.command("train")(train_cmd)
    app.command("reproduce")(reproduce_cmd)
    app.command("gate")(gate_cmd)
    app.command("promote")(promote_cmd)
    app.command("rollback")(rollback_cmd)
    app.command("card")(card_cmd)
    registry_app.command("list")(list_cmd)
    registry_app.command("history")(history_cmd)
