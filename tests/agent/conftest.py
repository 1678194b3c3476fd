"""Agent fixtures: the scripted planner on 127.0.0.1 and projects whose agent plans with it through the gateway."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# the synthetic training helpers live with the training tests (a tiny real model for the write tools)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))

from agent_helpers import agent_doc

from steward.llm.agent.scripted import ScriptedServer
from steward.workspace import Workspace, open_workspace


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio."""
    return "asyncio"


@pytest.fixture(scope="session")
def scripted() -> Iterator[ScriptedServer]:
    """The scripted OpenAI-compatible planner, served on a free port of 127.0.0.1."""
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture
def make_ws(tmp_path: Path, scripted: ScriptedServer) -> Iterator[Callable[..., Workspace]]:
    """``make(behaviour="planner", agent={...}, **top_level)`` → a workspace in a fresh directory."""
    opened: list[Workspace] = []

    def make(
        behaviour: str = "planner", *, agent: dict[str, Any] | None = None, doc: dict[str, Any] | None = None, **extra: Any
    ) -> Workspace:
        d = tmp_path / f"p{len(opened)}"
        d.mkdir()
        body = doc if doc is not None else agent_doc(scripted.url, behaviour, agent=agent, **extra)
        (d / "steward.yaml").write_text(yaml.safe_dump(body))
        ws = open_workspace(d)
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        ws.close()
