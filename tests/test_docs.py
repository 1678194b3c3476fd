"""Generated docs cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

from steward.spec import Spec
from steward.spec_reference import spec_reference

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_current() -> None:
    committed = (ROOT / "docs" / "config-reference.md").read_text()
    assert committed == spec_reference(), "docs/config-reference.md is stale: run .venv/bin/python tools/gen_docs.py"


def test_config_reference_names_every_top_level_key() -> None:
    text = spec_reference()
    for key in Spec.model_fields:
        if key not in ("base_dir", "spec_path"):
            assert f"| `{key}` |" in text


def test_readme_gives_the_two_commands_and_links_the_reference() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme
    assert "make test" in readme
    assert "docs/config-reference.md" in readme
