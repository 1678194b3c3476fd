"""How the loop waits for a rollout to end: a pluggable driver.

In production a running ``steward serve`` evaluates the rollout's steps from live
traffic and records them in the ``rollouts`` table; :class:`PollingDriver` only
watches that table until the rollout is ``completed``, ``rolled_back`` or
``aborted``. Fixed-weight modes (shadow, A/B, blue/green) are never completed by
the server (it only rolls them back on a breach), so the driver promotes them once
a full step window has passed without one. Tests (and simulations) pass a driver
that feeds window statistics into :func:`steward.serving.router.evaluate_step`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from steward._primitives import make_actor
from steward.errors import NotFound

if TYPE_CHECKING:
    from steward.serving.rollout import RolloutController, RolloutState

__all__ = ["PollingDriver", "RolloutDriver", "rollout_state"]

logger = logging.getLogger(__name__)

LOOP_ACTOR = make_actor("loop", "steward")
"""The actor of what the loop does on its own (rollout start, promote after a clean window, abort on timeout)."""


@runtime_checkable
class RolloutDriver(Protocol):
    """Waits for a started rollout to finish."""

    def wait(
        self, controller: RolloutController, model: str, rollout_id: str, *, timeout_s: float, keepalive: Callable[[], None]
    ) -> RolloutState | None:
        """Block until the rollout is no longer running; return its final state, or None after ``timeout_s``.

        ``keepalive`` must be called regularly: it raises when the loop lost its lock.
        """
        ...


def rollout_state(controller: RolloutController, rollout_id: str) -> RolloutState:
    """One rollout by id, with its steps.

    Raises:
        NotFound: no such rollout.
    """
    st = controller.get(rollout_id, with_steps=True)
    if st is None:
        raise NotFound(f"no rollout {rollout_id}", code="rollout.not_found")
    return st


class PollingDriver:
    """Polls the metadata store until the serving process finishes the rollout.

    Args:
        poll_s: Seconds between polls.
        clock: Monotonic clock (tests pass a fake).
        sleep: Sleep function (tests pass a fake).
    """

    def __init__(
        self, poll_s: float = 5.0, *, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.poll_s = poll_s
        self.clock = clock
        self.sleep = sleep

    def wait(
        self, controller: RolloutController, model: str, rollout_id: str, *, timeout_s: float, keepalive: Callable[[], None]
    ) -> RolloutState | None:
        """See :meth:`RolloutDriver.wait`."""
        deadline = self.clock() + timeout_s
        while True:
            keepalive()
            st = rollout_state(controller, rollout_id)
            if not st.active:
                return st
            window = st.spec.step_window_s
            if st.mode != "canary" and controller.step_elapsed_s(st) >= window:
                # the server decides only rollbacks for fixed-weight modes: a full clean window means promote
                return controller.promote(
                    model, actor=LOOP_ACTOR, reason=f"{st.mode} of v{st.challenger_version} within SLOs for {window:g} s"
                )
            remaining = deadline - self.clock()
            if remaining <= 0:
                return None
            self.sleep(min(self.poll_s, remaining))
