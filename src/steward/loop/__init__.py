"""The self-healing loop: a trigger carried through retrain → gate → rollout → promote or roll back.

:func:`run_loop` runs one loop for one model: it builds a fresh training set from
the newest data versions, trains a challenger (and stores its reference profile
for monitoring), gates it against the champion, rolls it out with the model's
serving policy (or promotes directly with ``rollout=False``) and ends
``promoted``, ``rolled_back``, ``champion_kept`` or ``aborted``. Exactly one loop
runs per model at a time (a lock in the metadata store); a crashed loop resumes
from its last completed step. Every step is appended to the audit trail.

:func:`run_pending` carries out the monitor's pending actions (``retrain``,
``shadow-then-promote``, ``rollback``); :func:`loop_history` lists past loops.
"""

from steward.loop._driver import PollingDriver, RolloutDriver, rollout_state
from steward.loop._lock import LoopLock, lock_name
from steward.loop._run import loop_history, rollout_policy, run_loop, run_pending
from steward.loop._state import STEPS, LoopResult, LoopRun, LoopStepRecord

__all__ = [
    "STEPS",
    "LoopLock",
    "LoopResult",
    "LoopRun",
    "LoopStepRecord",
    "PollingDriver",
    "RolloutDriver",
    "lock_name",
    "loop_history",
    "rollout_policy",
    "rollout_state",
    "run_loop",
    "run_pending",
]
