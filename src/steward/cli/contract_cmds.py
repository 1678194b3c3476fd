"""``steward contract check`` and ``steward contract diff``: the contract edge.

Both commands parse arguments, call :mod:`steward.data.contracts` and format
the result as Rich tables; the library does the work. Heavy imports (Polars,
the contract models) happen inside the commands so ``steward --help`` stays fast.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from steward.cli.app import console, contract_app

if TYPE_CHECKING:
    from steward.data.contracts import CheckResult, Contract, ContractDiff

__all__ = ["register"]

logger = logging.getLogger(__name__)


def _resolve(contract: str) -> Path:
    """A contract file path, or a contract name declared in steward.yaml."""
    p = Path(contract)
    if p.exists() or p.suffix in (".yaml", ".yml") or "/" in contract:
        return p
    from steward.cli.app import workspace

    return workspace().spec.contract_path(contract)


def _summary_table(contract: Contract, path: Path) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"contract {contract.name} v{contract.version} ({path})", title_justify="left")
    for col in ("column", "type", "nullable", "checks"):
        table.add_column(col)
    strict = contract.not_nullable()
    for name, spec in contract.columns.items():
        checks = []
        if name in contract.key:
            checks.append("key")
        if name == contract.event_time:
            checks.append("event_time")
        if spec.min is not None:
            checks.append(f"min {spec.min}")
        if spec.max is not None:
            checks.append(f"max {spec.max}")
        if spec.allowed is not None:
            checks.append(f"allowed {len(spec.allowed)} value(s)")
        if spec.regex is not None:
            checks.append(f"regex {spec.regex}")
        if spec.unique:
            checks.append("unique")
        table.add_row(Text(name), spec.type, "no" if name in strict else "yes", Text(", ".join(checks)))
    return table


def _result_tables(result: CheckResult, top: int) -> list[Any]:
    from rich.table import Table
    from rich.text import Text

    acct = Table(title="accounting", title_justify="left")
    for col in ("rows in", "valid", "failed", "(row, rule) failures", "contract version"):
        acct.add_column(col, justify="right")
    acct.add_row(
        f"{result.rows_in:,}", f"{result.rows_valid:,}", f"{result.rows_failed:,}", f"{result.failures.height:,}", result.contract_version
    )
    tables = [acct]
    if result.failures.height:
        reasons = Table(title=f"top {top} failure reasons", title_justify="left")
        for col in ("rule", "column", "rows", "example value", "example reason"):
            reasons.add_column(col, justify="right" if col == "rows" else "left")
        for row in result.top_reasons(top).iter_rows(named=True):
            value = "null" if row["example_value"] is None else str(row["example_value"])
            reasons.add_row(row["rule"], Text(row["column"] or ""), f"{row['rows']:,}", Text(value), Text(row["example_reason"]))
        tables.append(reasons)
    return tables


def _diff_table(diff: ContractDiff, old: Path, new: Path) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"contract diff {old} (v{diff.old_version}) → {new} (v{diff.new_version})", title_justify="left")
    for col in ("kind", "path", "change"):
        table.add_column(col)
    for ch in diff.changes:
        style = "bold red" if ch.kind == "breaking" else "green"
        table.add_row(Text(ch.kind, style=style), Text(ch.path), Text(ch.description))
    return table


def register(app: typer.Typer) -> None:
    """Add ``check`` and ``diff`` to the ``steward contract`` group (once, however often it is called)."""
    if any(cmd.name in ("check", "diff") for cmd in contract_app.registered_commands):
        return

    @contract_app.command("check")
    def check(
        contract: Annotated[str, typer.Argument(help="Contract file (or a contract name declared in steward.yaml).")],
        data: Annotated[
            Path | None, typer.Option("--data", "-d", help="A .csv, .parquet or .jsonl file to check against the contract.")
        ] = None,
        top: Annotated[int, typer.Option(help="How many failure reasons to list.")] = 10,
        strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any row fails (for CI).")] = False,
        now: Annotated[
            str | None, typer.Option(help="Reference time for freshness, ISO-8601 (default: now); useful when replaying old data.")
        ] = None,
    ) -> None:
        """Validate a contract file and, with --data, check a data file against it."""
        from steward.data.contracts import check_contract, load_contract, read_raw_file

        path = _resolve(contract)
        c = load_contract(path)
        out = console()
        out.print(_summary_table(c, path))
        rules = ", ".join(f"{r.name}: {r.expr}" for r in c.rules) or "none"
        fresh = f"{c.freshness.column} within {c.freshness.max_age}" if c.freshness else "none"
        out.print(
            f"key: [{', '.join(c.key)}]  event_time: {c.event_time or 'none'}  rules: {rules}  freshness: {fresh}",
            markup=False,
            highlight=False,
        )
        out.print(f"[green]contract {path} is valid[/green]")
        if data is None:
            return
        ref = None
        if now is not None:
            from steward._primitives import to_utc

            try:
                ref = to_utc(now)
            except ValueError:
                raise typer.BadParameter(f"{now!r} is not an ISO-8601 time, e.g. 2013-06-01T00:00:00Z", param_hint="--now") from None
        result = check_contract(read_raw_file(data), c, now=ref)
        out.print(f"checked {data}:")
        for table in _result_tables(result, top):
            out.print(table)
        for w in result.warnings:
            out.print(f"warning: {w}", style="yellow", markup=False, highlight=False)
        if strict and result.rows_failed:
            raise typer.Exit(1)

    @contract_app.command("diff")
    def diff(
        old: Annotated[Path, typer.Argument(help="The contract in force.")],
        new: Annotated[Path, typer.Argument(help="The proposed contract.")],
    ) -> None:
        """Classify every change from OLD to NEW; exit 3 when any change is breaking."""
        from steward.data.contracts import diff_contracts, load_contract
        from steward.errors import BreakingContractChange

        d = diff_contracts(load_contract(old), load_contract(new))
        out = console()
        if not d.changes:
            out.print(f"no changes between {old} and {new}")
            return
        out.print(_diff_table(d, old, new))
        if d.breaking:
            n = len(d.breaking_changes)
            raise BreakingContractChange(
                f"{new}: {n} breaking change(s) against {old}: {'; '.join(f'{c.path}: {c.description}' for c in d.breaking_changes[:3])}"
                + (" ..." if n > 3 else ""),
                hint="ship it under a new contract name, or make the change compatible (new columns nullable, ranges only widened)",
                details={"breaking": [{"path": c.path, "description": c.description} for c in d.breaking_changes]},
            )
        out.print(f"[green]{len(d.changes)} compatible change(s)[/green]")
