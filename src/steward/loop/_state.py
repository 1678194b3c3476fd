"""The loop's persisted state machine: one ``loop_runs`` row per loop, its context as JSON.

The row is written after every step, so a process that dies mid-loop leaves a
``running`` row whose ``context`` says which steps completed and what they
produced (data versions, challenger version, gate verdict, rollout id): enough
for the next ``steward loop`` to resume without redoing finished work.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from steward._primitives import utcnow

if TYPE_CHECKING:
    from steward.backends.base import MetadataStore

__all__ = ["STEPS", "LoopResult", "LoopRun", "LoopStepRecord"]

logger = logging.getLogger(__name__)

STEPS: tuple[str, ...] = ("training_set", "train", "gate", "rollout", "decide")
"""The loop's steps, in order."""

RUNNING, FINISHED, ABORTED = "running", "finished", "aborted"


@dataclass
class LoopStepRecord:
    """One executed step of a loop.

    Attributes:
        step: ``training_set``, ``train``, ``gate``, ``rollout`` or ``decide``.
        status: ``done``, ``skipped`` or ``failed``.
        started_at: ISO-8601 UTC.
        finished_at: ISO-8601 UTC.
        inputs: What the step read (data versions, versions compared...).
        outputs: What it produced (challenger version, verdict, rollout id...).
        note: One line for people.
    """

    step: str
    status: str
    started_at: str
    finished_at: str
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopStepRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: d[k] for k in ("step", "status", "started_at", "finished_at", "inputs", "outputs", "note") if k in d})


@dataclass
class LoopResult:
    """What one loop did.

    Attributes:
        loop_id: The ``loop_runs`` row.
        model: Registered model name.
        outcome: ``promoted``, ``rolled_back``, ``champion_kept`` or ``aborted``.
        reason: Why, in one line (the failed gate checks, the SLO breach, ...).
        steps: Every executed step, in order (steps done before a crash included).
        challenger_version: The version trained by this loop (None when it never got that far).
        champion_version: The champion after the loop.
        resumed: This call resumed a loop an earlier process left unfinished.
        trigger: What started the loop (``manual``, ``monitor:POLICY:ACTION_ID``, ...).
    """

    loop_id: str
    model: str
    outcome: str
    reason: str
    steps: list[LoopStepRecord]
    challenger_version: int | None
    champion_version: int | None
    resumed: bool = False
    trigger: str = "manual"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["steps"] = [s.to_dict() for s in self.steps]
        return out


@dataclass
class LoopRun:
    """A ``loop_runs`` row, decoded."""

    loop_id: str
    model: str
    trigger: str
    state: str
    step: str
    context: dict[str, Any]
    owner: str
    started_at: str
    updated_at: str
    finished_at: str | None = None
    outcome: str | None = None
    reason: str | None = None

    @property
    def done(self) -> list[str]:
        """Completed steps, in order."""
        return list(self.context.get("done", []))

    @property
    def steps(self) -> list[LoopStepRecord]:
        """Recorded step records."""
        return [LoopStepRecord.from_dict(s) for s in self.context.get("steps", [])]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> LoopRun:
        """Decode a ``loop_runs`` row."""
        return cls(
            loop_id=row["loop_id"],
            model=row["model_name"],
            trigger=row["trigger_name"],
            state=row["state"],
            step=row["step"],
            context=json.loads(row["context"] or "{}"),
            owner=row["owner"],
            started_at=row["started_at"],
            updated_at=row["updated_at"],
            finished_at=row["finished_at"],
            outcome=row["outcome"],
            reason=row["reason"],
        )


def _dumps(context: dict[str, Any]) -> str:
    return json.dumps(context, default=str, sort_keys=True)


def create_run(store: MetadataStore, model: str, trigger: str, owner: str, context: dict[str, Any]) -> LoopRun:
    """Insert a new ``running`` loop at its first step."""
    now = utcnow()
    loop_id = uuid.uuid4().hex[:16]
    context = {"done": [], "steps": [], **context}
    store.execute(
        "INSERT INTO loop_runs (loop_id, model_name, trigger_name, state, step, context, owner, started_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (loop_id, model, trigger, RUNNING, STEPS[0], _dumps(context), owner, now, now),
    )
    return LoopRun(loop_id, model, trigger, RUNNING, STEPS[0], context, owner, now, now)


def save_run(store: MetadataStore, run: LoopRun) -> None:
    """Write the run's step, context and owner back (after every step)."""
    run.updated_at = utcnow()
    store.execute(
        "UPDATE loop_runs SET step = ?, context = ?, owner = ?, updated_at = ? WHERE loop_id = ?",
        (run.step, _dumps(run.context), run.owner, run.updated_at, run.loop_id),
    )


def finish_run(store: MetadataStore, run: LoopRun, *, outcome: str, reason: str) -> None:
    """Close the run: ``finished`` with an outcome, or ``aborted``."""
    now = utcnow()
    run.state = ABORTED if outcome == "aborted" else FINISHED
    run.outcome, run.reason, run.finished_at, run.updated_at = outcome, reason, now, now
    store.execute(
        "UPDATE loop_runs SET state = ?, step = ?, context = ?, outcome = ?, reason = ?, finished_at = ?, updated_at = ? WHERE loop_id = ?",
        (run.state, run.step, _dumps(run.context), outcome, reason, now, now, run.loop_id),
    )


def unfinished_run(store: MetadataStore, model: str) -> LoopRun | None:
    """The newest ``running`` loop of ``model`` (left by a crashed or interrupted process), if any."""
    row = store.fetchone("SELECT * FROM loop_runs WHERE model_name = ? AND state = ? ORDER BY started_at DESC", (model, RUNNING))
    return LoopRun.from_row(row) if row else None


def list_runs(store: MetadataStore, model: str | None = None, *, limit: int = 50) -> list[LoopRun]:
    """Loops of one model (or all), newest first."""
    where, params = ("WHERE model_name = ?", (model,)) if model else ("", ())
    rows = store.fetchall(f"SELECT * FROM loop_runs {where} ORDER BY started_at DESC, loop_id DESC", params)
    return [LoopRun.from_row(r) for r in rows[:limit]]
