"""Monitoring and self-healing operations: one monitoring pass, the report, the loop.

``run_monitor`` judges the latest window of the prediction log against every policy and
records the verdicts (their actions included); ``monitor_report`` writes the HTML and JSON
report of the recorded verdicts with the loop's runs marked; ``run_loop`` carries a trigger,
or the monitor's pending actions, through retrain → gate → rollout → promote or roll back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from steward.loop import LoopResult, PollingDriver, RolloutDriver, loop_history, run_pending
from steward.loop import run_loop as _run_loop
from steward.monitoring import MonitorVerdict, ReferenceProfile, ReportPaths, build_report, evaluate_policies, logged_models

if TYPE_CHECKING:
    from steward._primitives import Progress
    from steward.features.training_set import TrainingSet
    from steward.workspace import Workspace

__all__ = ["MonitorPass", "monitor_report", "run_loop", "run_monitor"]


class MonitorPass(Protocol):
    """A running background monitor (``steward serve --monitor``): one pass over its models, as on its schedule."""

    def run_once(self) -> list[MonitorVerdict]:
        """Evaluate every model once; one model's failure does not stop the others."""


def run_monitor(
    ws: Workspace,
    model: str | None = None,
    *,
    version: str | None = None,
    reference: ReferenceProfile | None = None,
    monitor: MonitorPass | None = None,
) -> list[MonitorVerdict]:
    """Evaluate every monitoring policy once on the latest window and record the verdicts.

    Args:
        ws: The workspace.
        model: The model to judge (default: every model in the prediction log).
        version: Its version (default: the newest logged).
        reference: The reference profile (default: the one stored with the version).
        monitor: A running background monitor: its pass is run instead (its models, its gauges).

    Returns:
        One verdict per model (none when nothing is logged yet).
    """
    if monitor is not None:
        return monitor.run_once()
    models = [model] if model else logged_models(ws)
    return [evaluate_policies(ws, m, version=version, reference=reference) for m in models]


def monitor_report(ws: Workspace, out_dir: str | Path | None = None, *, model: str | None = None, limit: int = 200) -> ReportPaths:
    """Write the monitoring report (self-contained HTML with inline plots, and its JSON twin) from the recorded verdicts.

    The plots mark the monitor's actions and the self-healing loop's outcomes (its ``limit`` newest runs).

    Args:
        ws: The workspace.
        out_dir: Directory to write into (default: ``ROOT/reports``).
        model: Only this model (default: every monitored model).
        limit: Most recent verdicts (and loop runs) per report.
    """
    return build_report(
        ws, ws.root / "reports" if out_dir is None else out_dir, model=model, limit=limit, loop_runs=loop_history(ws, model, limit=limit)
    )


def run_loop(
    ws: Workspace,
    *,
    model: str | None = None,
    trigger: str | None = None,
    rollout: bool = True,
    driver: RolloutDriver | None = None,
    poll_s: float | None = None,
    timeout_s: float = 3600.0,
    actor: str | None = None,
    builder: Callable[..., TrainingSet] | None = None,
    progress: Progress | None = None,
) -> list[LoopResult]:
    """Run the self-healing loop: one loop for ``trigger`` now, or (no trigger) the monitor's pending actions.

    Args:
        ws: The workspace.
        model: Registered model name (default: the project's).
        trigger: Run one loop now, recording this trigger; None carries out the pending actions
            (a crashed loop is resumed first).
        rollout: Roll out with the serving policy; False gates, then promotes directly.
        driver: Waits for a rollout to finish (default: polls the rollout table every ``poll_s``).
        poll_s: Seconds between polls of the rollout's state (with the default driver).
        timeout_s: Longest wait for a rollout (then it is aborted and the loop ends ``aborted``).
        actor: Who (default ``$STEWARD_ACTOR`` or the OS user).
        builder: Builds the training set (default: the features stage's, from the newest data).
        progress: Told of each step.

    Returns:
        The loops run, in order (empty when nothing was pending).
    """
    if driver is None and poll_s is not None:
        driver = PollingDriver(poll_s)
    if trigger is not None:
        loop = _run_loop(
            ws,
            model=model,
            trigger=trigger,
            driver=driver,
            rollout=rollout,
            timeout_s=timeout_s,
            actor=actor,
            builder=builder,
            progress=progress,
        )
        return [loop]
    return run_pending(
        ws, model=model, driver=driver, rollout=rollout, timeout_s=timeout_s, actor=actor, builder=builder, progress=progress
    )
