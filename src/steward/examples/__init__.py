"""Bundled example projects, used by ``steward init --example`` and ``steward demo``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from steward.errors import NotFound

__all__ = ["EXAMPLES", "example_dir"]

EXAMPLES = ("flights",)


def example_dir(name: str) -> Path:
    """The directory of a bundled example project."""
    if name not in EXAMPLES:
        raise NotFound(f"no example named {name!r}", hint=f"known examples: {', '.join(EXAMPLES)}")
    return Path(str(resources.files("steward.examples") / name))
