"""``steward init`` and ``steward demo``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from steward.cli.app import console

__all__ = ["register"]


class _RichReporter:
    """Renders the demo's narrative with Rich: a rule per stage, live progress bars, tables."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console()
        self._progress = Progress(
            TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self.console, transient=True
        )
        self._tasks: dict[str, Any] = {}

    def stage(self, title: str, narrative: str) -> None:
        self._stop()
        self.console.rule(f"[bold cyan]{title}")
        self.console.print(narrative, style="dim")

    def progress(self, stage: str, done: int, total: int | None, /) -> None:
        if done == 0 and total is None:  # a step with no count
            self.note(stage)
            return
        if not self._progress.live.is_started:
            self._progress.start()
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(self._tasks[stage], completed=done, total=total)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        from rich.table import Table

        self._stop()
        t = Table(title=title, title_justify="left")
        for i, c in enumerate(columns):
            numeric = bool(rows) and all(isinstance(r[i], int | float) for r in rows if i < len(r))
            t.add_column(c, justify="right" if numeric else "left")
        for r in rows:
            t.add_row(*[f"{v:,}" if isinstance(v, int) else str(v) for v in r])
        self.console.print(t)

    def note(self, text: str) -> None:
        self._stop()
        self.console.print(f"  {text}")

    def _stop(self) -> None:
        if self._progress.live.is_started:
            self._progress.stop()
            for tid in list(self._tasks.values()):
                self._progress.remove_task(tid)
            self._tasks.clear()

    def close(self) -> None:
        self._stop()


def register(app: typer.Typer) -> None:
    """Add ``init`` and ``demo`` to the app."""

    @app.command()
    def init(
        directory: Annotated[Path, typer.Argument(help="Directory to create the project in.")],
        example: Annotated[str, typer.Option("--example", "-e", help="Bundled example to copy.")] = "flights",
        force: Annotated[bool, typer.Option("--force", help="Overwrite an existing steward.yaml.")] = False,
    ) -> None:
        """Create a project from a bundled example."""
        from steward.project import init_project

        path = init_project(directory, example, force=force)
        console().print(f"[green]created[/green] {path}")
        console().print(f"next: cd {directory} && steward pipeline run")

    @app.command()
    def demo(
        directory: Annotated[Path, typer.Option("--dir", help="Project directory for the demo.")] = Path("demo"),
        quick: Annotated[bool, typer.Option("--quick", help="A shorter run (for CI).")] = False,
    ) -> None:
        """Run the whole story on the flights example: land, gate, build, train, serve, watch, heal."""
        from steward.demo import DemoOptions, run_demo

        reporter = _RichReporter()
        try:
            summary = run_demo(DemoOptions(directory=directory, quick=quick), reporter)
        finally:
            reporter.close()
        console().rule("[bold green]Done")
        for name, secs in summary.stages:
            console().print(f"  {name:<10} {secs:6.1f} s")
        console().print(f"  project: {summary.spec_path}")
