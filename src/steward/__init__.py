"""Steward: machine-learning and LLM services in production, end to end.

The front door for using Steward as a library: the names a script needs to go from a
project to a served, monitored, self-healing model, each one the function the CLI and
the HTTP API call themselves (most come from :mod:`steward.ops`, the service layer)::

    import steward

    ws = steward.open_workspace(steward.init_project(Path("flights")))
    steward.run_pipeline(ws)
    steward.build_features(ws)
    result = steward.train(ws)

Names load on first use (PEP 562), so ``import steward`` stays cheap: polars, MLflow,
LightGBM and FastAPI are imported only by the operation that needs them. See
``docs/library.md`` for the whole walk-through.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steward.api.app import create_app
    from steward.data.pipeline import run_pipeline
    from steward.errors import StewardError
    from steward.examples.lander import land as land_example
    from steward.features.store import build_features, materialize
    from steward.ops import promote, rollback, run_gate, run_loop, run_monitor, train
    from steward.project import init_project
    from steward.serving.scoring import score
    from steward.spec import Spec, load_spec
    from steward.workspace import Workspace, open_workspace

__all__ = [
    "Spec",
    "StewardError",
    "Workspace",
    "__version__",
    "build_features",
    "create_app",
    "init_project",
    "land_example",
    "load_spec",
    "materialize",
    "open_workspace",
    "promote",
    "rollback",
    "run_gate",
    "run_loop",
    "run_monitor",
    "run_pipeline",
    "score",
    "train",
]

# name → (module, attribute): imported on first access, then cached in the module's namespace
_LAZY: dict[str, tuple[str, str]] = {
    # a project: create one from a bundled example, load its spec, open it for work
    "init_project": ("steward.project", "init_project"),
    "load_spec": ("steward.spec", "load_spec"),
    "Spec": ("steward.spec", "Spec"),
    "open_workspace": ("steward.workspace", "open_workspace"),
    "Workspace": ("steward.workspace", "Workspace"),
    # data: the bundled example's daily drops, then ingest and bronze → silver
    "land_example": ("steward.examples.lander", "land"),
    "run_pipeline": ("steward.data.pipeline", "run_pipeline"),
    # features: gold tables, then the online store
    "build_features": ("steward.features.store", "build_features"),
    "materialize": ("steward.features.store", "materialize"),
    # models, through the service layer: train a challenger, gate it, move the champion alias
    "train": ("steward.ops", "train"),
    "run_gate": ("steward.ops", "run_gate"),
    "promote": ("steward.ops", "promote"),
    "rollback": ("steward.ops", "rollback"),
    # serving: the HTTP app (in-process with httpx, or under uvicorn) and batch scoring of a lake table
    "create_app": ("steward.api.app", "create_app"),
    "score": ("steward.serving.scoring", "score"),
    # monitoring and the self-healing loop
    "run_monitor": ("steward.ops", "run_monitor"),
    "run_loop": ("steward.ops", "run_loop"),
    # every failure Steward raises on purpose, with a stable code
    "StewardError": ("steward.errors", "StewardError"),
}


def _version() -> str:
    # importlib.metadata costs more than the rest of `import steward`: it is read on first use of __version__
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("steward")
    except PackageNotFoundError:  # a source tree on sys.path that was never installed: its pyproject.toml says
        import tomllib

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
    else:
        raise AttributeError(f"module 'steward' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # the curated names, not the helpers this module imports to provide them
    return sorted({*__all__, *(n for n in globals() if n.startswith("__"))})
