"""Generated docs cannot drift from the code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
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


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, re.M | re.S)


def test_the_library_page_runs_as_written(tmp_path: Path) -> None:
    """docs/library.md, every python block in order, in an empty directory: init → ... → monitor on January 2013."""
    blocks = _python_blocks((ROOT / "docs" / "library.md").read_text())
    assert len(blocks) >= 7
    code = "\n\n".join(blocks)
    assert "from steward" not in code and "import steward." not in code  # the front door only
    (tmp_path / "walkthrough.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("STEWARD_SPEC", None)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "walkthrough.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    assert "a loaded spec is read-only" in out and "200 2000" in out
    assert re.search(r"flights: 2\d{4} read, 2\d{4} to silver, \d+ quarantined", out), out
    assert "gate: passed" in out and "600 predictions" in out
    assert re.search(r"flights_delay v1: (ok|warn|breach) on 200 rows", out), out
    assert (tmp_path / "flights" / ".steward" / "lake").is_dir()
    print(f"docs/library.md ran in {seconds:.1f} s")


def test_readme_and_the_docs_index_link_every_page() -> None:
    readme = (ROOT / "README.md").read_text()
    index = (ROOT / "docs" / "README.md").read_text()
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name != "README.md")
    assert {"library.md", "architecture.md", "config-reference.md"} <= set(pages)
    for page in pages:
        assert f"](docs/{page})" in readme, f"README.md does not link docs/{page}"
        assert f"]({page})" in index, f"docs/README.md does not link {page}"
    for target in re.findall(r"\]\(([^)#:]+)\)", index):
        assert (ROOT / "docs" / target).exists(), target
