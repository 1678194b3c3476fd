"""The Typer application, its global options and error mapping.

Commands live in small modules (one per lifecycle stage) and import the
library inside their functions, so ``steward --help`` stays fast.
Errors become one red line and the error's exit code, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["GROUPS", "app", "console", "err_console", "main", "workspace"]

app = typer.Typer(
    name="steward",
    help="Steward: run ML and LLM services in production, end to end, and keep them healthy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state: dict[str, Any] = {"spec": None}


def console() -> Any:
    """The stdout Rich console (created lazily)."""
    from rich.console import Console

    if "console" not in _state:
        _state["console"] = Console()
    return _state["console"]


def err_console() -> Any:
    """The stderr Rich console."""
    from rich.console import Console

    if "err_console" not in _state:
        _state["err_console"] = Console(stderr=True)
    return _state["err_console"]


def workspace() -> Workspace:
    """The workspace of the spec given by ``--spec`` (or found upwards)."""
    from steward.workspace import open_workspace

    if "workspace" not in _state:
        _state["workspace"] = open_workspace(_state["spec"])
    ws: Workspace = _state["workspace"]
    return ws


@app.callback()
def _root(
    spec: Annotated[
        Path | None,
        typer.Option("--spec", "-s", help="Path to steward.yaml (or its directory). Default: search upwards.", envvar="STEWARD_SPEC"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details to stderr.")] = False,
) -> None:
    """Steward command line."""
    _state["spec"] = spec
    _state.pop("workspace", None)
    # The library never configures logging; the CLI edge does.
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not verbose:
        # Third-party chatter (MLflow's INFO lines, SHAP's API-change warnings) drowns the narrative.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)


# Shared command groups: several command modules add to the same group.
data_app = typer.Typer(help="Inspect the lake: table history, quarantine.", no_args_is_help=True)
contract_app = typer.Typer(help="Check and diff data contracts.", no_args_is_help=True)
pipeline_app = typer.Typer(help="Run the bronze → silver pipeline (and backfills).", no_args_is_help=True)
features_app = typer.Typer(help="Build gold feature tables and the online store.", no_args_is_help=True)
registry_app = typer.Typer(help="Model versions and aliases.", no_args_is_help=True)
rollout_app = typer.Typer(help="Start, watch, promote or abort a rollout.", no_args_is_help=True)
monitor_app = typer.Typer(help="Drift, performance and SLO checks.", no_args_is_help=True)
llm_app = typer.Typer(help="The LLM gateway: costs, evals, guardrail evals.", no_args_is_help=True)
rag_app = typer.Typer(help="Retrieval-augmented answers over a corpus.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
GROUPS = {
    "data": data_app,
    "contract": contract_app,
    "pipeline": pipeline_app,
    "features": features_app,
    "registry": registry_app,
    "rollout": rollout_app,
    "monitor": monitor_app,
    "llm": llm_app,
    "rag": rag_app,
    "audit": audit_app,
}

# Command modules, each with ``register(app)``; a stage adds its module here.
COMMAND_MODULES = (
    "project_cmds",
    "data_cmds",
    "contract_cmds",
    "features_cmds",
    "train_cmds",
    "serve_cmds",
    "rollout_cmds",
    "monitor_cmds",
    "llm_cmds",
    "rag_cmds",
    "agent_cmds",
    "audit_cmds",
    "governance_cmds",
    "loop_cmds",
)


def _register() -> None:
    import importlib
    import importlib.util

    for name in COMMAND_MODULES:
        qual = f"steward.cli.{name}"
        if importlib.util.find_spec(qual) is None:
            continue  # stage not built yet
        importlib.import_module(qual).register(app)
    for group, sub in GROUPS.items():
        if sub.registered_commands or sub.registered_groups:
            app.add_typer(sub, name=group)


_register()


def main() -> None:
    """Entry point: run the app, mapping StewardError to one red line and its exit code."""
    from steward.errors import StewardError

    try:
        # standalone mode: click prints usage errors and exits with code 2 itself.
        app()
    except StewardError as exc:
        msg = f"error[{exc.code}]: {exc.message}"
        if exc.hint:
            msg += f"\n  hint: {exc.hint}"
        err_console().print(msg, style="bold red", markup=False, highlight=False)
        sys.exit(exc.exit_code)
