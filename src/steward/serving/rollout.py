"""The rollout controller: rollout state and every step, kept in the metadata store and the audit trail.

The metadata store is the source of truth: the CLI (``steward rollout ...``), the
admin API and every server replica read and write the same ``rollouts`` row, so a
rollout started from a laptop is picked up by every replica's next poll. Decisions
themselves come from the pure rules in :mod:`steward.serving.router`; this module
only records them and moves registry aliases on promotion.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from steward._primitives import iso_utc, make_actor, resolve_actor
from steward.errors import Conflict, NotFound
from steward.governance.audit import AuditTrail
from steward.serving.registry_link import promote_version
from steward.serving.router import RoutePolicy, StepDecision, StepRules
from steward.spec import RolloutSpec

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["RolloutController", "RolloutState", "rules_from_spec"]

logger = logging.getLogger(__name__)

ACTIVE = "running"
SYSTEM_ACTOR = make_actor("system", "rollout")
"""The actor of steps the controller decides itself (advance, roll back on a breach)."""


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def rules_from_spec(spec: RolloutSpec) -> StepRules:
    """The pure rules of a rollout policy."""
    steps = tuple(sorted(spec.steps)) if spec.mode == "canary" else (spec.weight if spec.weight is not None else 50.0,)
    if spec.mode == "canary" and spec.weight is not None and not spec.steps:
        steps = (spec.weight,)
    slo = spec.slo
    return StepRules(
        steps=steps or (100.0,),
        window_s=spec.step_window_s,
        max_error_rate=slo.max_error_rate,
        max_p99_ms=slo.max_p99_ms,
        max_prediction_shift=slo.max_prediction_shift,
        max_disagreement=slo.max_disagreement,
        min_requests=slo.min_requests,
    )


@dataclass
class RolloutState:
    """One rollout as stored.

    Attributes:
        rollout_id: Unique id (also the sticky-hash salt).
        model: Registered model name.
        mode: ``canary``, ``ab``, ``shadow`` or ``bluegreen``.
        state: ``running``, ``completed``, ``rolled_back`` or ``aborted``.
        champion_version: Champion version when the rollout started.
        challenger_version: Challenger version being rolled out.
        step_index: Current step (canary).
        weight: Current challenger share in percent.
        policy: The policy (``RolloutSpec`` as a dict).
        reason: Why it is in its state (the breach, for a rollback).
    """

    rollout_id: str
    model: str
    mode: str
    state: str
    champion_version: str | None
    challenger_version: str | None
    step_index: int
    weight: float
    policy: dict[str, Any]
    reason: str | None
    actor: str
    started_at: str
    step_started_at: str
    updated_at: str
    finished_at: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def spec(self) -> RolloutSpec:
        """The policy as a model."""
        return RolloutSpec.model_validate(self.policy)

    @property
    def active(self) -> bool:
        """Still running."""
        return self.state == ACTIVE

    def route_policy(self) -> RoutePolicy:
        """What the router applies now (champion only once finished)."""
        if not self.active:
            return RoutePolicy("none", 0.0, self.rollout_id)
        return RoutePolicy(self.mode, self.weight, self.rollout_id)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rollout_id": self.rollout_id,
            "model": self.model,
            "mode": self.mode,
            "state": self.state,
            "champion_version": self.champion_version,
            "challenger_version": self.challenger_version,
            "step_index": self.step_index,
            "weight": self.weight,
            "policy": self.policy,
            "reason": self.reason,
            "actor": self.actor,
            "started_at": self.started_at,
            "step_started_at": self.step_started_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "steps": self.steps,
        }


class RolloutController:
    """Start, advance, promote and abort rollouts; every step recorded.

    Args:
        ws: The workspace (metadata store, registry).
        clock: Wall clock in epoch seconds (tests pass a fake).
        promote: Makes a version the champion (default: :func:`steward.serving.registry_link.promote_version`).
    """

    def __init__(self, ws: Workspace, *, clock: Callable[[], float] = time.time, promote: Callable[..., None] | None = None) -> None:
        self.ws = ws
        self.clock = clock
        self._promote = promote if promote is not None else promote_version
        self._migrated = False

    @property
    def store(self) -> Any:
        """The migrated metadata store."""
        store = self.ws.metadata
        if not self._migrated:
            store.migrate()
            self._migrated = True
        return store

    # -- reads ----------------------------------------------------------------------
    def _row_to_state(self, row: dict[str, Any], with_steps: bool = False) -> RolloutState:
        st = RolloutState(
            rollout_id=row["rollout_id"],
            model=row["model_name"],
            mode=row["mode"],
            state=row["state"],
            champion_version=row["champion_version"],
            challenger_version=row["challenger_version"],
            step_index=int(row["step_index"]),
            weight=float(row["weight"]),
            policy=json.loads(row["policy"] or "{}"),
            reason=row["reason"],
            actor=row["actor"],
            started_at=row["started_at"],
            step_started_at=row["step_started_at"],
            updated_at=row["updated_at"],
            finished_at=row["finished_at"],
        )
        if with_steps:
            st.steps = self.steps(st.rollout_id)
        return st

    def active(self, model: str) -> RolloutState | None:
        """The running rollout of ``model``, if any."""
        row = self.store.fetchone(
            "SELECT * FROM rollouts WHERE model_name = ? AND state = ? ORDER BY started_at DESC LIMIT 1", (model, ACTIVE)
        )
        return self._row_to_state(row) if row else None

    def latest(self, model: str, *, with_steps: bool = True) -> RolloutState | None:
        """The most recent rollout of ``model`` (running or finished)."""
        row = self.store.fetchone("SELECT * FROM rollouts WHERE model_name = ? ORDER BY started_at DESC LIMIT 1", (model,))
        return self._row_to_state(row, with_steps) if row else None

    def get(self, rollout_id: str, *, with_steps: bool = False) -> RolloutState | None:
        """One rollout by id (running or finished), or None."""
        row = self.store.fetchone("SELECT * FROM rollouts WHERE rollout_id = ?", (rollout_id,))
        return self._row_to_state(row, with_steps) if row else None

    def recent(self, limit: int = 10, *, with_steps: bool = True) -> list[RolloutState]:
        """The newest rollouts of every model (running or finished), newest first."""
        rows = self.store.fetchall("SELECT * FROM rollouts ORDER BY started_at DESC LIMIT ?", (int(limit),))
        return [self._row_to_state(r, with_steps) for r in rows]

    def all_active(self) -> list[RolloutState]:
        """Every running rollout."""
        return [self._row_to_state(r) for r in self.store.fetchall("SELECT * FROM rollouts WHERE state = ? ORDER BY model_name", (ACTIVE,))]

    def steps(self, rollout_id: str) -> list[dict[str, Any]]:
        """Every recorded step of a rollout, oldest first."""
        rows = self.store.fetchall("SELECT * FROM rollout_steps WHERE rollout_id = ? ORDER BY seq", (rollout_id,))
        return [{**r, "metrics": json.loads(r["metrics"] or "{}")} for r in rows]

    # -- writes ---------------------------------------------------------------------
    def start(
        self,
        model: str,
        spec: RolloutSpec,
        *,
        champion_version: str | None,
        challenger_version: str,
        actor: str = SYSTEM_ACTOR,
    ) -> RolloutState:
        """Start a rollout of ``challenger_version`` against the champion.

        Raises:
            Conflict: a rollout of this model is already running.
        """
        if self.active(model) is not None:
            raise Conflict(
                f"a rollout of {model} is already running", code="rollout.running", hint=f"steward rollout abort {model} (or promote) first"
            )
        actor = resolve_actor(actor)
        rules = rules_from_spec(spec)
        weight = {"canary": rules.steps[0], "ab": rules.steps[0], "shadow": 0.0, "bluegreen": 100.0}[spec.mode]
        now = iso_utc(self.clock())
        rid = uuid.uuid4().hex[:16]
        with self.store.transaction():
            self.store.execute(
                "INSERT INTO rollouts (rollout_id, model_name, mode, state, champion_version, challenger_version, step_index, weight, policy, "
                "reason, actor, started_at, step_started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rid,
                    model,
                    spec.mode,
                    ACTIVE,
                    champion_version,
                    challenger_version,
                    0,
                    weight,
                    spec.model_dump_json(),
                    "started",
                    actor,
                    now,
                    now,
                    now,
                ),
            )
            self._step(rid, "start", weight, f"{spec.mode} of v{challenger_version} against v{champion_version}", {}, actor)
        st = self.active(model)
        assert st is not None
        self._audit("rollout.start", st, actor, {"weight": weight, "policy": st.policy})
        return st

    def _step(self, rid: str, action: str, weight: float, reason: str, metrics: dict[str, Any], actor: str) -> None:
        row = self.store.fetchone("SELECT MAX(seq) AS m FROM rollout_steps WHERE rollout_id = ?", (rid,))
        seq = int(row["m"]) + 1 if row and row["m"] is not None else 1
        self.store.execute(
            "INSERT INTO rollout_steps (rollout_id, seq, ts, action, weight, reason, metrics, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (rid, seq, iso_utc(self.clock()), action, weight, reason, json.dumps(metrics, default=str), resolve_actor(actor)),
        )

    def _audit(self, action: str, st: RolloutState, actor: str, details: dict[str, Any]) -> None:
        try:
            AuditTrail(self.store).append(
                action,
                f"model:{st.model}@{st.challenger_version}",
                actor=actor,
                model=st.model,
                details={"rollout_id": st.rollout_id, "mode": st.mode, "state": st.state, "weight": st.weight, **details},
            )
        except Exception:
            logger.exception("could not append %s to the audit trail", action)

    def step_elapsed_s(self, st: RolloutState) -> float:
        """Seconds since the current step began."""
        return max(0.0, self.clock() - _epoch(st.step_started_at))

    def apply(
        self, st: RolloutState, decision: StepDecision, metrics: dict[str, Any] | None = None, *, actor: str = SYSTEM_ACTOR
    ) -> RolloutState:
        """Record a decision of :func:`~steward.serving.router.evaluate_step` (``hold`` records nothing).

        ``advance`` moves to the next weight; ``rollback`` sets weight 0 and ends the
        rollout with the breach as reason; ``complete`` promotes the challenger.
        """
        if decision.action == "hold":
            return st
        if decision.action == "complete":
            return self.promote(st.model, actor=actor, reason=decision.reason, metrics=metrics)
        if decision.action == "rollback":
            return self._finish(st, "rolled_back", decision.reason, metrics or {}, actor, action="rollback")
        now = iso_utc(self.clock())
        with self.store.transaction():
            self.store.execute(
                "UPDATE rollouts SET step_index = ?, weight = ?, step_started_at = ?, updated_at = ?, reason = ? WHERE rollout_id = ? AND state = ?",
                (decision.step_index, decision.weight, now, now, decision.reason, st.rollout_id, ACTIVE),
            )
            self._step(st.rollout_id, "advance", decision.weight, decision.reason, metrics or {}, actor)
        new = self.active(st.model)
        assert new is not None
        self._audit("rollout.step", new, actor, {"reason": decision.reason, "metrics": metrics or {}})
        return new

    def set_weight(self, model: str, weight: float, *, actor: str, reason: str = "manual") -> RolloutState:
        """Set the challenger share by hand (blue/green: 100 = switch to green, 0 = switch back to blue)."""
        st = self._require_active(model)
        now = iso_utc(self.clock())
        w = max(0.0, min(100.0, weight))
        with self.store.transaction():
            self.store.execute(
                "UPDATE rollouts SET weight = ?, step_started_at = ?, updated_at = ?, reason = ? WHERE rollout_id = ?",
                (w, now, now, reason, st.rollout_id),
            )
            self._step(st.rollout_id, "set_weight", w, reason, {}, actor)
        new = self._require_active(model)
        self._audit("rollout.weight", new, actor, {"reason": reason})
        return new

    def _require_active(self, model: str) -> RolloutState:
        st = self.active(model)
        if st is None:
            raise NotFound(f"no rollout of {model} is running", code="rollout.not_running", hint=f"steward rollout start {model}")
        return st

    def promote(
        self, model: str, *, actor: str, reason: str = "promoted", metrics: dict[str, Any] | None = None, force: bool = False
    ) -> RolloutState:
        """Make the challenger the champion (through the registry and its gate) and finish the rollout.

        Raises:
            NotFound: no rollout is running.
            GateFailed: the challenger has no passing gate verdict (and not ``force``); the rollout keeps running.
        """
        st = self._require_active(model)
        if st.challenger_version is None:
            raise Conflict(f"rollout of {model} has no challenger version", code="rollout.no_challenger")
        self._promote(self.ws, model, st.challenger_version, actor=actor, reason=reason, force=force)
        return self._finish(st, "completed", reason, metrics or {}, actor, action="promote", weight=100.0)

    def abort(self, model: str, *, actor: str, reason: str = "aborted by operator") -> RolloutState:
        """Stop the rollout: all traffic back on the champion at once."""
        st = self._require_active(model)
        return self._finish(st, "aborted", reason, {}, actor, action="abort")

    def _finish(
        self, st: RolloutState, state: str, reason: str, metrics: dict[str, Any], actor: str, *, action: str, weight: float = 0.0
    ) -> RolloutState:
        now = iso_utc(self.clock())
        with self.store.transaction():
            self.store.execute(
                "UPDATE rollouts SET state = ?, weight = ?, reason = ?, updated_at = ?, finished_at = ? WHERE rollout_id = ?",
                (state, weight, reason, now, now, st.rollout_id),
            )
            self._step(st.rollout_id, action, weight, reason, metrics, actor)
        new = self.get(st.rollout_id, with_steps=True)
        assert new is not None
        self._audit(f"rollout.{action}", new, actor, {"reason": reason, "metrics": metrics})
        logger.info("rollout %s of %s: %s (%s)", new.rollout_id, new.model, action, reason)
        return new
