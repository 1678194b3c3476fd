"""``steward agent "task"``, ``steward agent approve|approvals|show|eval`` and ``steward mcp``: thin edges over the agent and MCP."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from steward.cli.app import console, workspace

__all__ = ["register"]

ROLE_HELP = "Role of the run: viewer (read tools), operator (+ propose), admin (+ write, with an approval)."


class _DefaultRun(TyperGroup):
    """``steward agent "task"`` is ``steward agent run "task"``: a first word that is no subcommand is the task."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


agent_app = typer.Typer(cls=_DefaultRun, help="The bounded operations agent: run a task, approve writes, evaluate.", no_args_is_help=True)

# Exit codes by outcome, matching the error classes: a bound → limit (11), approval/allow-list → auth (10), guardrail → validation (2).
_EXIT = {"max_steps": 11, "max_tokens": 11, "max_usd": 11, "max_seconds": 11, "allow_list": 10, "approval_required": 10, "guardrail": 2}


def _print_run(run: dict[str, Any]) -> None:
    from rich.table import Table

    c = console()
    table = Table("step", "thought", "tool call", "status", "size", "tokens", "cost $", "ms")
    for s in run["steps"]:
        calls = s["calls"] or [None]
        for i, call in enumerate(calls):
            table.add_row(
                str(s["n"]) if i == 0 else "",
                (s["thought"] or "")[:40] if i == 0 else "",
                f"{call['tool']}({json.dumps(call['arguments'])[:60]})" if call else "(answer)",
                call["status"] if call else "",
                str(call["result_size"]) if call else "",
                str(s["tokens"]) if i == 0 else "",
                f"{s['cost_usd']:.6f}" if i == 0 else "",
                f"{s['latency_ms']:.0f}" if i == 0 else "",
            )
    c.print(table)
    color = "green" if run["status"] == "completed" else "yellow"
    why = f" ({run['stop_reason']})" if run["stop_reason"] else ""
    c.print(
        f"[bold {color}]{run['status']}{why}[/] run {run['run_id']}: {run['tokens']} tokens, ${run['cost_usd']:.6f}, {run['elapsed_s']}s"
    )
    c.print(run["answer"] or "", markup=False, highlight=False)
    if run.get("pending_approval"):
        c.print(f"an admin can approve it with: steward agent approve {run['pending_approval']}", style="yellow")


@agent_app.command("run")
def run_cmd(
    task: Annotated[str, typer.Argument(help="What to do, in words.")],
    role: Annotated[str, typer.Option("--role", help=ROLE_HELP)] = "viewer",
    approve_token: Annotated[list[str] | None, typer.Option("--approve-token", help="A one-time approval token (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """Run a task through the agent (also: steward agent "TASK")."""
    import asyncio

    from steward._primitives import resolve_actor
    from steward.llm.agent import Agent

    ws = workspace()
    run = asyncio.run(Agent(ws).run(task, role=role, actor=resolve_actor(), approval_tokens=approve_token or []))
    data = run.to_dict()
    if as_json:
        console().print_json(json.dumps(data, default=str))
    else:
        _print_run(data)
    if run.stop_reason:
        raise typer.Exit(_EXIT.get(run.stop_reason, 1))


@agent_app.command("approve")
def approve_cmd(
    request_id: Annotated[str, typer.Argument(help="The pending approval request (from the run's output).")],
    ttl: Annotated[float | None, typer.Option("--ttl", help="Seconds the token stays valid (default llm.agent.approval_ttl_s).")] = None,
) -> None:
    """Approve one pending write call; prints a one-time token bound to exactly that call."""
    from steward._primitives import resolve_actor
    from steward.llm.agent import Approvals

    token, req = Approvals(workspace()).grant(request_id, admin=resolve_actor(), ttl_s=ttl)
    console().print(f"approved {req.tool} {json.dumps(req.arguments)}", markup=False, highlight=False)
    console().print(f"one-time token (shown once): {token}", markup=False, highlight=False)


@agent_app.command("approvals")
def approvals_cmd(
    status: Annotated[str | None, typer.Option("--status", help="pending, granted or used.")] = "pending",
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The approval queue."""
    from rich.table import Table

    from steward.llm.agent import Approvals

    rows = [a.to_dict() for a in Approvals(workspace()).list(status)]
    if as_json:
        console().print_json(json.dumps(rows, default=str))
        return
    table = Table("request", "tool", "arguments", "status", "requested by", "created")
    for r in rows:
        table.add_row(r["request_id"], r["tool"], json.dumps(r["arguments"])[:80], r["status"], r["requested_by"], r["created_at"][:19])
    console().print(table)


@agent_app.command("show")
def show_cmd(run_id: Annotated[str, typer.Argument(help="The run id.")]) -> None:
    """A recorded run with its steps."""
    from steward.llm.agent import get_run

    data = get_run(workspace(), run_id)
    if "steps" in data:
        _print_run(data)
    else:
        console().print_json(json.dumps(data, default=str))


@agent_app.command("eval")
def eval_cmd(
    live: Annotated[bool, typer.Option("--live", help="Plan with llm.agent.model (a real model) instead of the scripted planner.")] = False,
    execute: Annotated[bool, typer.Option("--execute/--dry-run", help="Run the tools (write calls still stop at approvals).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Score the agent on the scripted task set: tool choice, arguments, task success."""
    import asyncio

    from rich.table import Table

    from steward.llm.agent import run_eval, scripted_spec
    from steward.llm.agent.scripted import ScriptedServer
    from steward.workspace import Workspace

    ws = workspace()
    if live:
        report = asyncio.run(run_eval(ws, execute=execute))
    else:
        with ScriptedServer() as srv:
            report = asyncio.run(run_eval(Workspace(scripted_spec(ws.spec, srv.url)), execute=execute))
    if as_json:
        console().print_json(json.dumps(report.to_dict(), default=str))
        return
    table = Table("task", "tools", "args", "status", "ok")
    for t in report.tasks:
        table.add_row(t.id, f"{t.tool_hits}/{t.tool_total}", f"{t.arg_hits}/{t.arg_total}", t.status, "yes" if t.success else "[red]no[/]")
    console().print(table)
    console().print(
        f"{report.model}: {report.n_tasks} tasks — tool choice {report.tool_choice_accuracy:.3f}, "
        f"arguments {report.argument_accuracy:.3f}, task success {report.task_success:.3f}"
    )


def mcp_cmd(
    transport: Annotated[str, typer.Option("--transport", help="stdio or http (streamable HTTP with bearer API keys).")] = "stdio",
    host: Annotated[str, typer.Option("--host", help="HTTP bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTP port.")] = 8765,
    role: Annotated[str, typer.Option("--role", help="Role of the stdio client. " + ROLE_HELP)] = "viewer",
) -> None:
    """Serve Steward's tools, model cards and runbooks over MCP."""
    from steward.mcp import build_server, http_app

    ws = workspace()
    if transport == "stdio":
        build_server(ws, role=role).run("stdio")
    elif transport == "http":
        import uvicorn

        uvicorn.run(http_app(ws), host=host, port=port, log_level="warning")
    else:
        raise typer.BadParameter("--transport is stdio or http")


def register(app: typer.Typer) -> None:
    """Add ``steward agent ...`` and ``steward mcp``."""
    app.add_typer(agent_app, name="agent")
    app.command("mcp")(mcp_cmd)
