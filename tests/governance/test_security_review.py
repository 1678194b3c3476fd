"""docs/security-review.md cannot rot: every OWASP LLM item is mapped, and every test it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REVIEW = ROOT / "docs" / "security-review.md"
REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
ITEMS = [f"LLM{n:02d}" for n in range(1, 11)]


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## ", text, flags=re.M)
    return {p.splitlines()[0].split(":", 1)[0].strip(): p for p in parts[1:]}


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")}


def test_every_owasp_item_has_a_control_and_a_test() -> None:
    sections = _sections(REVIEW.read_text(encoding="utf-8"))
    for item in ITEMS:
        assert item in sections, f"{item} has no section in {REVIEW.name}"
        assert "Controls:" in sections[item] and REF.search(sections[item]), f"{item} names no control or no test"
    gaps = [body for key, body in sections.items() if key.startswith("Not covered")]
    assert gaps, "the review must say what is not covered"
    assert "pip-audit" in gaps[0]


def test_every_referenced_test_exists() -> None:
    refs = REF.findall(REVIEW.read_text(encoding="utf-8"))
    assert len(refs) >= 30
    missing = []
    cache: dict[str, set[str]] = {}
    for file, name in refs:
        path = ROOT / file
        if not path.exists():
            missing.append(f"{file} (no such file)")
            continue
        if name not in cache.setdefault(file, _test_functions(path)):
            missing.append(f"{file}::{name}")
    assert not missing, f"{REVIEW.name} names tests that do not exist: {missing}"


def test_ci_runs_pip_audit_on_the_lock() -> None:
    ci = (ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    assert re.search(r"pip-audit\s+-r\s+requirements\.lock", ci)


def test_the_check_fails_on_a_missing_test(tmp_path: Path) -> None:
    # the reference check itself must be able to fail
    fake = tmp_path / "t.py"
    fake.write_text("def test_real():\n    pass\n\nasync def test_also():\n    pass\n")
    assert _test_functions(fake) == {"test_real", "test_also"}
    assert "test_renamed" not in _test_functions(fake)
