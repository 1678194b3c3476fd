"""Rollouts inside the running server: apply the stored state, evaluate running rollouts on a tick.

The metadata store holds each rollout (:mod:`steward.serving.rollout`); starting, promoting,
aborting or weighting one is an operation of :mod:`steward.ops`, which writes it there and has
the running server apply it at once (every other replica picks it up at its next poll).
:class:`RolloutOrchestrator` is the server's side of that: it loads or drops the challenger,
sets the routing policy, starts or stops shadow traffic, and on its own tick (whatever the poll
interval, 0 included) judges each running rollout against its SLOs and records the decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

from steward.errors import StewardError
from steward.serving.rollout import RolloutState, rules_from_spec
from steward.serving.router import RoutePolicy, evaluate_step
from steward.serving.slots import ServedModel

if TYPE_CHECKING:
    from steward.serving.server import ModelServer

__all__ = ["RolloutOrchestrator"]

logger = logging.getLogger(__name__)

# rollout evaluation tick: a quarter of the shortest step window, within these bounds; idle: every second
_TICK_MIN_S = 0.25
_TICK_MAX_S = 5.0
_TICK_IDLE_S = 1.0


class RolloutOrchestrator:
    """Apply rollout state to a server's models and evaluate running rollouts.

    Args:
        server: The server whose models, slots, shadow traffic and controller it works on.
    """

    def __init__(self, server: ModelServer) -> None:
        self.server = server

    def tick_interval(self) -> float:
        """Seconds to the next rollout evaluation: a quarter of the shortest running step window, bounded."""
        windows = [
            m.rollout.spec.step_window_s
            for m in self.server.models.values()
            if m.rollout is not None and m.rollout.active and m.rollout.spec.auto
        ]
        if not windows:
            return _TICK_IDLE_S
        return min(_TICK_MAX_S, max(_TICK_MIN_S, min(windows) / 4.0))

    async def sync(self, m: ServedModel, changes: dict[str, Any]) -> None:
        """Read ``m``'s running rollout from the metadata store and apply it."""
        ctl = self.server.controller
        if ctl is None:
            return
        st = await asyncio.to_thread(ctl.active, m.name)
        await self.apply(m, st, changes)

    async def apply(self, m: ServedModel, st: RolloutState | None, changes: dict[str, Any] | None = None) -> None:
        """Make ``m`` serve as ``st`` says (None: the champion alone); what changed goes into ``changes``."""
        slots, shadow = self.server.slots, self.server.shadow
        changes = changes if changes is not None else {}
        if st is None:
            m.rollout = None
            m.sticky_key = None
            m.policy = RoutePolicy()
            gone = slots.drop_challenger(m)
            if gone is not None:
                changes["challenger"] = gone
            shadow.stop(m)
            return
        if st.challenger_version:
            loaded = await slots.set_challenger(m, st.challenger_version)
            if loaded is not None:
                changes["challenger"] = loaded
        if m.rollout is None or m.rollout.rollout_id != st.rollout_id or m.rollout.step_index != st.step_index:
            for slot in (m.champion, m.challenger):
                if slot is not None:
                    # windows restart with each step; at least a minute of samples is kept for the p99
                    slot.window.window_s = max(st.spec.step_window_s, 60.0)
                    slot.window.reset()
        m.rollout = st
        m.sticky_key = st.spec.sticky_key
        m.policy = st.route_policy()
        self.server.metrics.rollout_weight.labels(m.name, st.mode).set(st.weight)
        if st.mode == "shadow":
            shadow.ensure(m)
        else:
            shadow.stop(m)

    async def tick_all(self) -> None:
        """Evaluate every running rollout once."""
        for m in list(self.server.models.values()):
            if m.rollout is not None and m.rollout.active and m.rollout.spec.auto:
                try:
                    await self.tick(m.name)
                except Exception as exc:
                    logger.warning("rollout evaluation of %s failed: %s", m.name, exc)

    async def tick(self, name: str) -> RolloutState | None:
        """Evaluate ``name``'s running rollout against its SLOs and apply the decision (advance, rollback, complete)."""
        server = self.server
        m = server.served(name)
        st = m.rollout
        ctl = server.controller
        if st is None or not st.active or ctl is None or m.champion is None or m.challenger is None:
            return st
        rules = rules_from_spec(st.spec)
        chall, champ = m.challenger.window.stats(), m.champion.window.stats()
        decision = evaluate_step(rules, st.step_index, ctl.step_elapsed_s(st), chall, champ, progressive=st.mode == "canary")
        if decision.action == "hold":
            return st
        stats = server.variant_stats(name)
        metrics = {"challenger": stats.get("challenger"), "champion": stats.get("champion")}
        # under the reload lock: a concurrent reload must not re-apply the rollout state this decision replaces
        async with server.reload_lock:
            lock_name, owner = f"rollout:{name}", uuid.uuid4().hex
            got = await asyncio.to_thread(ctl.store.try_lock, lock_name, owner, 30.0)
            if not got:
                return st  # another replica is applying a decision
            try:
                fresh = await asyncio.to_thread(ctl.active, name)
                if fresh is None or fresh.rollout_id != st.rollout_id or fresh.step_index != st.step_index:
                    new_state: RolloutState | None = fresh
                else:
                    try:
                        new_state = await asyncio.to_thread(lambda: ctl.apply(fresh, decision, metrics))
                    except StewardError as exc:  # e.g. the gate refuses promotion: stay at 100 % and say why
                        logger.warning("rollout of %s could not %s: %s", name, decision.action, exc)
                        return st
            finally:
                await asyncio.to_thread(ctl.store.release_lock, lock_name, owner)
            server.metrics.rollout_events.labels(name, decision.action).inc()
            await self.apply(m, new_state if new_state is not None and new_state.active else None)
        if decision.action == "complete":
            with contextlib.suppress(StewardError):
                await server.reload(name)
        return new_state
