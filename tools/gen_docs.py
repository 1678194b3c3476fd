"""Regenerate generated docs: ``docs/config-reference.md`` from ``steward.spec``.

Usage: .venv/bin/python tools/gen_docs.py
"""

from __future__ import annotations

from pathlib import Path

from steward.spec_reference import spec_reference

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    (ROOT / "docs" / "config-reference.md").write_text(spec_reference())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
