"""``steward serve``: the API (gateway and model serving) under uvicorn."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from steward.cli.app import workspace

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["app_factory", "register"]

_OVERRIDES_ENV = "STEWARD_SERVE_OVERRIDES"


def _apply_overrides(ws: Any, overrides: dict[str, Any]) -> None:
    from steward.spec import ServedModelSpec

    # the spec is frozen: the CLI's choices make one validated copy that replaces the workspace's spec
    changes: dict[str | tuple[str, ...], Any] = {}
    for ref in overrides.get("models", []):
        name, _, alias = str(ref).partition("@")
        key = ("serving", "models", name)
        current = changes.get(key) or ws.spec.serving.models.get(name)
        changes[key] = (
            current.model_copy(update={"alias": alias})
            if current is not None and alias
            else current or ServedModelSpec(alias=alias or "champion")
        )
    if overrides.get("poll_interval_s") is not None:
        changes["serving.poll_interval_s"] = float(overrides["poll_interval_s"])
    if overrides.get("access_log") is not None:
        changes["serving.access_log"] = bool(overrides["access_log"])
    if overrides.get("monitor") is not None:
        changes["monitoring.schedule.enabled"] = bool(overrides["monitor"])
    if changes:
        ws.spec = ws.spec.with_overrides(changes)


def app_factory() -> FastAPI:
    """The app of one worker (``uvicorn --factory``): spec from ``STEWARD_SPEC``, CLI overrides from the environment."""
    from steward.api.app import create_app
    from steward.observability.gcfreeze import enable
    from steward.workspace import open_workspace

    enable()
    ws = open_workspace(os.environ.get("STEWARD_SPEC"))
    _apply_overrides(ws, json.loads(os.environ.get(_OVERRIDES_ENV, "{}")))
    return create_app(ws, monitor_schedule=ws.spec.monitoring.schedule.enabled)


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Serve NAME[@ALIAS] (repeatable; adds to serving.models).")
    ] = None,
    poll_interval: Annotated[float | None, typer.Option(help="Seconds between registry polls for alias changes (0 = never).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes (each loads the models).")] = 1,
    json_logs: Annotated[bool, typer.Option("--json-logs/--plain-logs", help="JSON log lines with request ids.")] = True,
    access_log: Annotated[bool | None, typer.Option("--access-log/--no-access-log", help="One log line per request.")] = None,
    monitor: Annotated[
        bool | None,
        typer.Option("--monitor/--no-monitor", help="Evaluate the monitoring policies in the background (default: monitoring.schedule)."),
    ] = None,
    switch_interval_ms: Annotated[
        float, typer.Option(min=0.05, help="Python GIL switch interval: the event loop waits at most this long for a busy worker thread.")
    ] = 0.5,
) -> None:
    """Serve the Steward API: models under /v1/models/NAME and /v2 (Open Inference Protocol), the OpenAI-compatible LLM gateway under /v1."""
    import importlib.util
    import logging
    import sys

    import uvicorn

    # the model and the prediction log run in threads; a short switch interval keeps them from
    # holding the event loop (and so every request's latency) for Python's default 5 ms
    sys.setswitchinterval(switch_interval_ms / 1000.0)

    from steward.api.app import create_app
    from steward.backends.readiness import preflight  # lazy like the rest here: keeps `steward --help` fast
    from steward.observability.gcfreeze import enable

    enable()  # a long-running server: keep what it loads at start-up out of the GC's full passes
    level = log_level.upper()
    if json_logs:
        from steward.observability.logging import configure_json_logging

        configure_json_logging(level)
    overrides = {"models": model or [], "poll_interval_s": poll_interval, "access_log": access_log, "monitor": monitor}
    log_config = None if json_logs else uvicorn.config.LOGGING_CONFIG
    # uvloop + httptools (both installed with the serve extra; "auto" only when missing), no uvicorn access
    # log (ours is in the serving middleware, sampled/off), no Server/Date headers built per response
    fast: dict[str, Any] = {
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "auto",
        "http": "httptools" if importlib.util.find_spec("httptools") else "auto",
        "access_log": False,
        "server_header": False,
        "date_header": False,
    }
    ws = workspace()
    # a dead metadata_url or tracking database: one red line now, not a traceback from the app's start-up
    preflight(ws)
    if workers > 1:
        os.environ["STEWARD_SPEC"] = str(ws.spec.spec_path.resolve())
        os.environ[_OVERRIDES_ENV] = json.dumps(overrides)
        uvicorn.run(
            "steward.cli.serve_cmds:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            log_config=log_config,
            **fast,
        )
        return
    _apply_overrides(ws, overrides)
    logging.getLogger("steward").setLevel(level)
    app = create_app(ws, monitor_schedule=ws.spec.monitoring.schedule.enabled)
    uvicorn.run(app, host=host, port=port, workers=1, log_level=log_level, log_config=log_config, **fast)


def register(app: typer.Typer) -> None:
    """Add ``steward serve``."""
    app.command("serve")(serve)
