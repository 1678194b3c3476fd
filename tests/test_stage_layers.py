"""The ML stages import each other in one direction only (lazy imports included), until import-linter checks it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import steward

SRC = Path(steward.__file__).parent


def _imported(package: str) -> set[str]:
    """Every steward module imported anywhere in ``package`` (module top, functions, TYPE_CHECKING blocks)."""
    out: set[str] = set()
    for path in (SRC / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                out.add(node.module)
                out.update(f"{node.module}.{a.name}" for a in node.names if node.module == "steward")
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("steward.")}


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("modeling", ("training", "registry", "monitoring", "serving", "loop", "ops", "features")),
        ("monitoring", ("loop", "training", "registry", "serving", "ops")),
        ("registry", ("training", "serving", "loop", "ops")),
        ("training", ("serving", "loop", "ops")),
        ("serving", ("training", "loop", "ops")),
        ("loop", ("ops",)),
    ],
)
def test_a_stage_imports_no_stage_above_it(package: str, forbidden: tuple[str, ...]) -> None:
    bad = sorted(m for m in _imported(package) if m.split(".")[1] in forbidden)
    assert bad == [], f"steward.{package} imports {bad}"
