"""MCP test fixtures: the agent tests' helpers (a registry whose write tools record their calls) are shared."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
