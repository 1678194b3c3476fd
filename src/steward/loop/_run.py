"""The self-healing loop: training set → challenger → gate → rollout → promote or roll back.

One loop per model at a time (:class:`~steward.loop._lock.LoopLock`). Each step's
inputs and outputs are saved in the ``loop_runs`` row and appended to the audit
trail before the next step starts, so a crash resumes at the first unfinished
step with the saved context (a challenger already trained is never retrained), or
aborts cleanly when that context no longer holds (its challenger was deleted).

Errors: a :class:`~steward.errors.StewardError` raised by a step (bad data, the
gate refusing a promotion, a rollout conflict) ends the loop ``aborted`` with the
error as reason and is re-raised; any other exception (a bug, an outage, Ctrl-C)
leaves the loop ``running`` so the next ``steward loop`` resumes it.

Without a serving process or rollout policy, ``rollout=False`` (``steward loop
--no-rollout``) gates and then promotes directly. A first model (no champion) is
gated on the absolute thresholds and promoted directly too: there is nothing to
roll out against.

Crash tests set ``STEWARD_FAULT`` to ``loop_after_<step>`` (the step is saved) or
``loop_train_registered`` (the challenger is registered, the loop's context not yet
saved) and the process exits abruptly there.

The steps themselves are :class:`~steward.loop._runner.LoopRunner`'s; this module takes the
lock, creates or resumes the run, and carries out the monitor's pending actions.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from steward._primitives import Progress, resolve_actor
from steward.errors import BackendUnavailable, LockHeld, NotFound, SpecError, StewardError
from steward.features import build_training_set
from steward.loop._driver import PollingDriver, RolloutDriver
from steward.loop._lock import LoopLock
from steward.loop._runner import Builder, LoopRunner, say
from steward.loop._state import LoopResult, LoopRun, create_run, list_runs, save_run, unfinished_run
from steward.monitoring import list_actions, mark_action
from steward.registry import rollback
from steward.spec import RolloutSpec

if TYPE_CHECKING:
    from steward.features.training_set import TrainingSet
    from steward.workspace import Workspace

__all__ = ["loop_history", "rollout_policy", "run_loop", "run_pending"]

logger = logging.getLogger(__name__)

LOOP_ACTIONS = ("retrain", "shadow-then-promote")


def rollout_policy(ws: Workspace, model: str, *, shadow: bool = False) -> RolloutSpec | None:
    """The model's rollout policy from ``serving.models.NAME.rollout`` (mode forced to shadow for ``shadow-then-promote``)."""
    served = ws.spec.serving.models.get(model)
    spec = served.rollout if served is not None else None
    if shadow:
        return (spec or RolloutSpec()).model_copy(update={"mode": "shadow"})
    return spec


def _default_builder(ws: Workspace, *, pins: dict[str, int] | None = None) -> TrainingSet:
    return build_training_set(ws, pins=pins, refresh=pins is None)


def run_loop(
    ws: Workspace,
    *,
    model: str | None = None,
    trigger: str = "manual",
    driver: RolloutDriver | None = None,
    rollout: bool = True,
    progress: Progress | None = None,
    builder: Builder | None = None,
    timeout_s: float = 3600.0,
    lock_ttl_s: float = 60.0,
    actor: str | None = None,
    action_id: str | None = None,
) -> LoopResult:
    """Carry one trigger through: training set → challenger → gate → rollout → promote or roll back.

    If an earlier loop of the model was left ``running`` (its process died), that
    loop is resumed from its last completed step instead (``result.resumed``), or
    aborted cleanly when its saved context no longer holds.

    Args:
        ws: The workspace.
        model: Registered model name (default ``model.name`` of the spec).
        trigger: What started the loop, recorded everywhere (``manual``, ``monitor:POLICY:ACTION``...).
        driver: Waits for the rollout to end (default :class:`PollingDriver`, which watches the table a running
            ``steward serve`` updates).
        rollout: Roll out with the serving policy (``serving.models.NAME.rollout``); False gates and then
            promotes directly (no serving process needed).
        progress: Told of each step, as ``progress(step, 0, None)`` (see :class:`~steward._primitives.Progress`).
        builder: Builds the training set (default ``steward.features.build_training_set``); called as
            ``builder(ws, pins=None)`` for the newest versions, ``pins=...`` to rebuild on resume.
        timeout_s: Longest wait for the rollout; then it is aborted and the loop ends ``aborted``.
        lock_ttl_s: TTL of the ``loop:<model>`` lock (heartbeated every third of it).
        actor: Who runs the loop (default ``$STEWARD_ACTOR`` or the OS user).
        action_id: The monitor action this loop carries out (marked done/failed by :func:`run_pending`).

    Returns:
        The outcome: ``promoted``, ``rolled_back``, ``champion_kept`` or ``aborted``.

    Raises:
        LockHeld: another loop of this model is running (the message names the holder).
        SpecError: ``rollout`` is asked for but the model has no rollout policy.
        StewardError: a step failed; the loop is recorded ``aborted`` with the error.
    """
    name = model or ws.spec.model.name
    who = resolve_actor(actor)
    store = ws.metadata
    store.migrate()
    lock = LoopLock(store, name, lock_ttl_s)
    try:
        lock.acquire()
    except LockHeld as exc:
        ws.audit.append(
            "loop.refused", f"model:{name}", actor=who, model=name, details={"trigger": trigger, "reason": exc.message, **exc.details}
        )
        raise
    with lock:
        run = unfinished_run(store, name)
        resumed = run is not None
        if run is None:
            spec = None
            if rollout:
                spec = rollout_policy(ws, name, shadow=trigger.startswith("monitor:shadow-then-promote"))
                if spec is None:
                    raise SpecError(
                        f"model {name} has no rollout policy (serving.models.{name}.rollout)",
                        code="loop.no_rollout_policy",
                        hint="add a rollout policy to steward.yaml, or run 'steward loop --no-rollout' (gate, then promote directly)",
                    )
            context = {
                "rollout": bool(rollout),
                "rollout_spec": spec.model_dump() if spec is not None else None,
                "timeout_s": timeout_s,
                "action_id": action_id,
            }
            run = create_run(store, name, trigger, lock.owner, context)
        else:
            previous_owner = run.owner
            run.owner = lock.owner
            save_run(store, run)
        runner = LoopRunner(
            ws,
            run,
            lock,
            driver=driver or PollingDriver(),
            builder=builder or _default_builder,
            progress=progress,
            actor=who,
            resumed=resumed,
        )
        if resumed:
            say(progress, f"resuming loop {run.loop_id} ({run.trigger}) after step {run.done[-1] if run.done else '(none)'}")
            runner._audit("loop.resume", inputs={"done": run.done}, previous_owner=previous_owner, at_step=run.step)
            why = runner.check_resumable()
            if why is not None:
                return runner.finish("aborted", f"could not resume loop {run.loop_id}: {why}")
        else:
            runner._audit("loop.start", inputs={"trigger": trigger}, rollout=rollout, timeout_s=timeout_s, action_id=action_id)
            say(progress, f"loop {run.loop_id} for {name} ({trigger})")
        try:
            return runner.execute()
        except StewardError as exc:
            if isinstance(exc, BackendUnavailable | LockHeld):
                raise  # transient, or another loop owns the run now: leave it to resume
            runner.finish("aborted", f"{exc.code}: {exc.message}")
            raise


def run_pending(
    ws: Workspace,
    *,
    model: str | None = None,
    driver: RolloutDriver | None = None,
    rollout: bool = True,
    progress: Progress | None = None,
    builder: Builder | None = None,
    timeout_s: float = 3600.0,
    lock_ttl_s: float = 60.0,
    actor: str | None = None,
) -> list[LoopResult]:
    """Carry out the monitor's pending actions (what ``steward loop`` does without ``--trigger``).

    A loop left unfinished by a crash is resumed first. Then each pending ``retrain``
    or ``shadow-then-promote`` action runs one loop (the action marked ``running``,
    then ``done`` or ``failed`` with the loop's outcome); a pending ``rollback``
    action rolls the registry back to the previous champion. Several pending retrain
    actions of one model are served by one loop (the others are marked ``skipped``).

    Returns:
        The loops run, in order.
    """
    kwargs: dict[str, Any] = {
        "driver": driver,
        "rollout": rollout,
        "progress": progress,
        "builder": builder,
        "timeout_s": timeout_s,
        "lock_ttl_s": lock_ttl_s,
        "actor": actor,
    }
    results: list[LoopResult] = []
    rows = ws.metadata.fetchall("SELECT DISTINCT model_name FROM loop_runs WHERE state = ?", ("running",))
    models = [model] if model else sorted(str(r["model_name"]) for r in rows)
    for m in models:
        if unfinished_run(ws.metadata, m) is not None:
            res = run_loop(ws, model=m, **kwargs)
            _settle_action(ws, res)
            results.append(res)
    pending = [a for a in list_actions(ws, model) if a["status"] == "pending"]
    served: set[str] = set()
    for a in pending:
        name, kind, aid = str(a["model"]), str(a["action"]), str(a["action_id"])
        if kind == "rollback":
            try:
                rollback(ws, name, reason=f"monitor policy {a['policy']}: {a['reason']}", actor=actor)
            except StewardError as exc:
                mark_action(ws, aid, "failed", note=str(exc))
            else:
                mark_action(ws, aid, "done", note="rolled back to the previous champion")
            continue
        if kind not in LOOP_ACTIONS:
            continue
        if name in served:
            mark_action(ws, aid, "skipped", note="served by an earlier loop in this pass")
            continue
        served.add(name)
        mark_action(ws, aid, "running", note="steward loop")
        try:
            res = run_loop(ws, model=name, trigger=f"monitor:{kind}:{a['policy']}:{aid}", action_id=aid, **kwargs)
        except StewardError as exc:
            mark_action(ws, aid, "failed", note=str(exc))
            raise
        if res.resumed:  # an older crashed loop was finished instead; run this action's loop now
            _settle_action(ws, res)
            results.append(res)
            res = run_loop(ws, model=name, trigger=f"monitor:{kind}:{a['policy']}:{aid}", action_id=aid, **kwargs)
        _settle_action(ws, res)
        results.append(res)
    return results


def _settle_action(ws: Workspace, res: LoopResult) -> None:
    run = ws.metadata.fetchone("SELECT context FROM loop_runs WHERE loop_id = ?", (res.loop_id,))
    aid = json.loads(run["context"]).get("action_id") if run else None
    if not aid:
        return
    status = "failed" if res.outcome == "aborted" else "done"
    try:
        mark_action(ws, str(aid), status, note=f"loop {res.loop_id}: {res.outcome}: {res.reason}")
    except NotFound:
        logger.warning("monitor action %s vanished before loop %s settled it", aid, res.loop_id)


def loop_history(ws: Workspace, model: str | None = None, *, limit: int = 50) -> list[LoopRun]:
    """Recorded loops of ``model`` (or of every model), newest first, with their steps and context."""
    ws.metadata.migrate()
    return list_runs(ws.metadata, model, limit=limit)
