"""What the demo is told to do, how it talks to a person, and what it reports back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from steward._primitives import make_actor

__all__ = ["DEMO_ACTOR", "DemoOptions", "DemoReporter", "DemoSummary", "fmt"]

DEMO_ACTOR = make_actor("system", "demo")


class DemoReporter(Protocol):
    """How the demo talks to a person (the CLI implements it with Rich)."""

    def stage(self, title: str, narrative: str) -> None:
        """A new stage begins."""

    def progress(self, stage: str, done: int, total: int | None, /) -> None:
        """Progress of long work inside a stage (a :class:`~steward._primitives.Progress`: a step, or a count)."""

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A small result table."""

    def note(self, text: str) -> None:
        """One line of narrative."""


@dataclass
class DemoOptions:
    """What the demo does.

    Attributes:
        directory: The project directory (created from the flights example if missing).
        quick: A shorter run for CI (January instead of January–June).
    """

    directory: Path = Path("demo")
    quick: bool = False

    @property
    def train_window(self) -> tuple[date, date]:
        """The landing window for the first model: January–June (quick: January)."""
        return (date(2013, 1, 1), date(2013, 1, 31)) if self.quick else (date(2013, 1, 1), date(2013, 6, 30))


@dataclass
class DemoSummary:
    """What the demo did, for the final summary."""

    spec_path: Path | None = None
    landed_files: int = 0
    reused_files: int = 0
    accounting: dict[str, dict[str, int]] = field(default_factory=dict)
    table_versions: dict[str, int] = field(default_factory=dict)
    training_rows: int = 0
    champion: str | None = None
    gates: list[str] = field(default_factory=list)
    mlflow_ui: str | None = None
    rag_answers: list[tuple[str, str]] = field(default_factory=list)
    server_url: str | None = None
    requests: int = 0
    request_errors: int = 0
    drift_events: int = 0
    loops: list[str] = field(default_factory=list)
    client_p50_ms: float | None = None
    client_p99_ms: float | None = None
    report_html: Path | None = None
    agent_answer: str | None = None
    llm_spend_usd: float | None = None
    stages: list[tuple[str, float]] = field(default_factory=list)


def fmt(v: float | None) -> str:
    """A number for a demo table (``-`` when missing)."""
    return "-" if v is None else f"{v:.4g}"
