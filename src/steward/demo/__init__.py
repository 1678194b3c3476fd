"""``steward demo``: the whole story on the flights example, stage by stage.

The demo is library code that narrates through a :class:`DemoReporter`; the CLI
renders it with Rich. Each stage re-uses what exists (landing is content
addressed, ingest is idempotent), so a second run is fast and says so. The stages
live in :mod:`._stages` (data, features, training, RAG, the agent, the summary) and
:mod:`._production` (serve, replay, monitor, heal).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from steward.demo._production import production_stage
from steward.demo._stages import agent_stage, data_stage, features_stage, rag_stage, summary_stage, training_stage
from steward.demo._types import DEMO_ACTOR, DemoOptions, DemoReporter, DemoSummary
from steward.project import init_project
from steward.spec import SPEC_FILENAME
from steward.workspace import open_workspace

__all__ = ["DEMO_ACTOR", "DemoOptions", "DemoReporter", "DemoSummary", "run_demo"]

logger = logging.getLogger(__name__)


def _timed(summary: DemoSummary, name: str, fn: Callable[[], None]) -> None:
    t0 = time.perf_counter()
    fn()
    summary.stages.append((name, time.perf_counter() - t0))


def run_demo(options: DemoOptions, reporter: DemoReporter) -> DemoSummary:
    """Run the demo end to end.

    Args:
        options: Where and how much.
        reporter: Receives the narrative, progress and tables.

    Returns:
        A :class:`DemoSummary` of what happened.
    """
    summary = DemoSummary()
    spec_path = options.directory / SPEC_FILENAME
    reporter.stage("Project", "The flights example: predict at scheduling time whether a flight arrives 15+ minutes late.")
    if spec_path.exists():
        reporter.note(f"Re-using the existing project at {options.directory}/ (delete it to start over).")
    else:
        init_project(options.directory, "flights")
        reporter.note(f"Created {spec_path} from the bundled flights example.")
    summary.spec_path = spec_path
    ws = open_workspace(spec_path)
    try:
        _timed(summary, "data", lambda: data_stage(ws, options, reporter, summary))
        _timed(summary, "features", lambda: features_stage(ws, reporter, summary))
        _timed(summary, "training", lambda: training_stage(ws, reporter, summary))
        _timed(summary, "production", lambda: production_stage(ws, options, reporter, summary))
        _timed(summary, "rag", lambda: rag_stage(ws, reporter, summary))
        _timed(summary, "agent", lambda: agent_stage(ws, reporter, summary))
        summary_stage(ws, reporter, summary)
    finally:
        ws.close()
    return summary
