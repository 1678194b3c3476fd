"""The CLI's one consumer of :class:`~steward._primitives.Progress`: Rich bars for counted stages, a line per step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from steward.cli.app import console

if TYPE_CHECKING:
    from steward._primitives import Progress

__all__ = ["progress_display"]


@contextmanager
def progress_display(*, enabled: bool = True) -> Iterator[Progress | None]:
    """A progress callback for the library, rendered on the console while the block runs.

    A step (``done == 0`` and ``total is None``) prints one dim line; counted calls drive one
    transient bar per stage (``total`` None: a bar of unknown length). Disabled (``--json``, or
    output that is not a terminal where it matters), it yields None, so the library skips reporting.
    """
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress import Progress as Bars
    from rich.text import Text

    out = console()
    bars = Bars(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=out,
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int | None, /) -> None:
        if done == 0 and total is None:
            out.print(Text(f"· {stage}", style="dim"))  # text, never markup: a stage may name a file with '['
            return
        if not bars.live.is_started:
            bars.start()
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done, total=total)

    try:
        yield update
    finally:
        if bars.live.is_started:
            bars.stop()
