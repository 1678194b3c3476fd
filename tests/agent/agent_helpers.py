"""Helpers shared by the agent tests: project files whose agent plans with the scripted planner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steward.tools import Tool, ToolContext, ToolRegistry, builtin_tools


def agent_doc(url: str, behaviour: str = "planner", *, agent: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A steward.yaml whose agent plans with the scripted planner (``behaviour``) through the gateway."""
    doc: dict[str, Any] = {
        "project": "agent-test",
        "llm": {
            "gateway": {
                "providers": {"scripted": {"kind": "openai", "base_url": url, "max_retries": 0}},
                "aliases": {"agent": [f"scripted:{behaviour}"]},
                "cache": {"exact": False},
            },
            # the injection classifier takes seconds to train; the test of the task guard switches it back on
            "guardrails": {"injection": {"enabled": False, "action": "block"}},
            "agent": {"model": "agent", "max_steps": 6, "max_tokens": 100_000, "max_usd": 5.0, "max_seconds": 30, **(agent or {})},
        },
    }
    doc.update(extra)
    return doc


def recording_registry(log: Path) -> ToolRegistry:
    """The built-in tools, with each write tool's effect replaced by appending its call to ``log``.

    The checks (allow-lists, validation, approvals, audit) are the real ones; only the effect
    differs, so tests of the approval flow need no MLflow registry (test_approvals.py uses the real one).
    """

    def effect(name: str) -> Any:
        def run(ws: Any, params: Any, ctx: ToolContext) -> dict[str, Any]:
            with log.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"tool": name, "arguments": params.model_dump(), "actor": ctx.actor}) + "\n")
            return {"done": name}

        return run

    tools = [t if t.permission != "write" else Tool(t.name, t.description, t.permission, t.params, effect(t.name)) for t in builtin_tools()]
    return ToolRegistry(tools)


def recorded(log: Path) -> list[dict[str, Any]]:
    """The write calls that ran."""
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []
