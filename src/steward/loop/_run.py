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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from steward._primitives import Progress, report_progress, resolve_actor, utcnow
from steward.data.faults import fault
from steward.errors import BackendUnavailable, Conflict, LockHeld, NotFound, SpecError, StewardError
from steward.loop._driver import LOOP_ACTOR, PollingDriver, RolloutDriver, rollout_state
from steward.loop._lock import LoopLock
from steward.loop._state import STEPS, LoopResult, LoopRun, LoopStepRecord, create_run, finish_run, list_runs, save_run, unfinished_run

if TYPE_CHECKING:
    from steward.features.training_set import TrainingSet
    from steward.spec import RolloutSpec
    from steward.workspace import Workspace

__all__ = ["loop_history", "run_loop", "run_pending"]

logger = logging.getLogger(__name__)

Builder = Callable[..., "TrainingSet"]

LOOP_ACTIONS = ("retrain", "shadow-then-promote")
LOOP_TAG = "steward.loop_id"


def _say(progress: Progress | None, msg: str) -> None:
    logger.info(msg)
    report_progress(progress, msg)


def rollout_policy(ws: Workspace, model: str, *, shadow: bool = False) -> RolloutSpec | None:
    """The model's rollout policy from ``serving.models.NAME.rollout`` (mode forced to shadow for ``shadow-then-promote``)."""
    from steward.spec import RolloutSpec

    served = ws.spec.serving.models.get(model)
    spec = served.rollout if served is not None else None
    if shadow:
        return (spec or RolloutSpec()).model_copy(update={"mode": "shadow"})
    return spec


def _default_builder(ws: Workspace, *, pins: dict[str, int] | None = None) -> TrainingSet:
    from steward.features import build_training_set

    return build_training_set(ws, pins=pins, refresh=pins is None)


class _Runner:
    """Executes (or resumes) one loop run step by step."""

    def __init__(
        self,
        ws: Workspace,
        run: LoopRun,
        lock: LoopLock,
        *,
        driver: RolloutDriver,
        builder: Builder,
        progress: Progress | None,
        actor: str,
        resumed: bool,
    ) -> None:
        self.ws = ws
        self.run = run
        self.lock = lock
        self.driver = driver
        self.builder = builder
        self.progress = progress
        self.actor = actor
        self.resumed = resumed
        self.ctx = run.context
        self.training_set: TrainingSet | None = None

    # -- bookkeeping --------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self.run.model

    def _audit(self, action: str, *, inputs: dict[str, Any] | None = None, outputs: dict[str, Any] | None = None, **details: Any) -> None:
        version = self.ctx.get("challenger_version")
        self.ws.audit.append(
            action,
            f"model:{self.model}@{version}" if version is not None else f"model:{self.model}",
            actor=self.actor,
            model=self.model,
            inputs=inputs,
            outputs=outputs,
            details={"loop_id": self.run.loop_id, "trigger": self.run.trigger, **details},
        )

    def _record(self, step: str, status: str, started: str, inputs: dict[str, Any], outputs: dict[str, Any], note: str) -> None:
        rec = LoopStepRecord(step, status, started, utcnow(), inputs, outputs, note)
        self.ctx.setdefault("steps", []).append(rec.to_dict())
        self.ctx.setdefault("done", []).append(step)
        save_run(self.ws.metadata, self.run)
        if step != "decide":  # the decision is audited as its outcome (loop.promote, loop.rollback, ...)
            self._audit(f"loop.{step}", inputs=inputs, outputs=outputs, status=status, note=note)
        fault(f"loop_after_{step}")

    def result(self) -> LoopResult:
        return LoopResult(
            loop_id=self.run.loop_id,
            model=self.model,
            outcome=self.run.outcome or "",
            reason=self.run.reason or "",
            steps=self.run.steps,
            challenger_version=self.ctx.get("challenger_version"),
            champion_version=self._champion(),
            resumed=self.resumed,
            trigger=self.run.trigger,
        )

    def _champion(self) -> int | None:
        from steward.registry import get_alias_version

        return get_alias_version(self.ws, self.model, "champion")

    def finish(self, outcome: str, reason: str) -> LoopResult:
        finish_run(self.ws.metadata, self.run, outcome=outcome, reason=reason)
        action = {"promoted": "loop.promote", "rolled_back": "loop.rollback", "champion_kept": "loop.champion_kept"}.get(
            outcome, "loop.abort"
        )
        self._audit(action, outputs={"outcome": outcome, "champion_version": self._champion()}, reason=reason)
        _say(self.progress, f"loop {self.run.loop_id}: {outcome}: {reason}")
        return self.result()

    # -- resume checks ------------------------------------------------------------------
    def check_resumable(self) -> str | None:
        """Why the saved context no longer holds (then the loop aborts), or None."""
        from steward.registry.versions import get_model_version

        version = self.ctx.get("challenger_version")
        if "train" in self.ctx.get("done", []) and version is not None:
            try:
                get_model_version(self.ws, self.model, int(version))
            except NotFound:
                return f"its challenger v{version} no longer exists in the registry"
        done = self.ctx.get("done", [])
        if "gate" in done and "rollout" not in done and self.ctx.get("gate", {}).get("champion_version") != self._champion():
            # the champion changed while the loop was down: gate again against the new one
            self.ctx["done"] = [s for s in done if s != "gate"]
            self.ctx["steps"] = [s for s in self.ctx.get("steps", []) if s.get("step") != "gate"]
        return None

    # -- steps --------------------------------------------------------------------------
    def execute(self) -> LoopResult:
        for step in STEPS:
            if step in self.ctx.get("done", []):
                continue
            self.lock.check()
            self.run.step = step
            save_run(self.ws.metadata, self.run)
            started = utcnow()
            inputs, outputs, note, status = getattr(self, f"_step_{step}")()
            decided = outputs.pop("_decided", None)
            self._record(step, status, started, inputs, outputs, note)
            if isinstance(decided, dict):
                return self.finish(str(decided["outcome"]), str(decided["reason"]))
        raise AssertionError("the decide step always ends the loop")  # pragma: no cover

    def _build(self, pins: dict[str, int] | None) -> TrainingSet:
        ts = self.builder(self.ws, pins=pins)
        self.training_set = ts
        return ts

    def _step_training_set(self) -> tuple[dict[str, Any], dict[str, Any], str, str]:
        _say(self.progress, "building a fresh training set from the newest data versions")
        ts = self._build(None)
        self.ctx["data_versions"] = dict(ts.data_versions)
        self.ctx["rows"] = ts.frame.height
        outputs = {"data_versions": ts.data_versions, "rows": ts.frame.height, "features": list(ts.feature_names)}
        pins = ", ".join(f"{k}@{v}" for k, v in sorted(ts.data_versions.items()))
        return {"pins": None}, outputs, f"{ts.frame.height} rows from {pins or 'unpinned inputs'}", "done"

    def _existing_challenger(self) -> tuple[int, str] | None:
        """A version an earlier, crashed attempt of this loop already registered."""
        try:
            versions = self.ws.model_registry.list_versions(self.model)
        except NotFound:  # no such registered model yet
            return None
        for mv in versions:
            if mv.run_id and self.ws.tracker.get_run(mv.run_id).tags.get(LOOP_TAG) == self.run.loop_id:
                return mv.version, mv.run_id
        return None

    def _step_train(self) -> tuple[dict[str, Any], dict[str, Any], str, str]:
        pins = self.ctx.get("data_versions")
        ts = self.training_set
        found = self._existing_challenger() if self.resumed else None
        if found is not None:
            version, run_id = found
            _say(self.progress, f"challenger v{version} was already trained by this loop (run {run_id}); not retraining")
            self.ctx.update(challenger_version=version, run_id=run_id)
            profile = self._ensure_profile(version, ts)
            return {"data_versions": pins}, {"version": version, "run_id": run_id, "profile": profile}, "recovered", "done"
        if ts is None:
            _say(self.progress, "rebuilding the training set at its pinned versions")
            ts = self._build(pins)
        from steward.training import train_model

        _say(self.progress, f"training a challenger for {self.model}")
        res = train_model(self.ws, ts, progress=self.progress, run_tags={LOOP_TAG: self.run.loop_id}, actor=self.actor)
        if res.version is None:
            raise Conflict("training registered no version", code="loop.not_registered")
        fault("loop_train_registered")  # crash tests: registered, but not yet saved in the loop's context
        self.ctx.update(challenger_version=res.version, run_id=res.run_id, metrics=res.metrics)
        save_run(self.ws.metadata, self.run)
        profile = self._ensure_profile(res.version, ts)
        outputs = {"version": res.version, "run_id": res.run_id, "metrics": res.metrics, "profile": profile}
        return {"data_versions": res.data_versions}, outputs, f"challenger v{res.version} (run {res.run_id})", "done"

    def _ensure_profile(self, version: int, ts: TrainingSet | None) -> str:
        """Make sure monitoring finds the challenger's reference profile; say where it is."""
        from steward.monitoring import profile_for_model

        try:
            profile_for_model(self.ws, self.model, version)
        except NotFound:
            pass  # a training stage that logs no profile: build one here from the training set
        else:
            return "logged with the training run"
        return self._profile(ts if ts is not None else self._build(self.ctx.get("data_versions")), version)

    def _profile(self, ts: TrainingSet, version: int) -> str:
        """Build and store the challenger's reference profile so monitoring can compare windows with it later."""
        import polars as pl

        from steward.modeling import score_frame
        from steward.monitoring import build_reference_profile, store_profile
        from steward.registry import load_verified_model

        mspec = self.ws.spec.monitoring
        frame = ts.frame
        if frame.height > mspec.reference_sample:
            frame = frame.sample(n=mspec.reference_sample, seed=0)
        model, info = load_verified_model(self.ws, self.model, version)
        prediction = score_frame(model, info, frame.select(ts.feature_names))
        target = frame.get_column(ts.label).cast(pl.Int64).to_numpy()
        profile = build_reference_profile(
            frame,
            list(ts.feature_names),
            list(ts.categorical),
            prediction=prediction,
            target=target,
            bins=mspec.bins,
            sample_size=mspec.reference_sample,
            meta={"model": self.model, "version": str(version), "data_versions": ts.data_versions, "loop_id": self.run.loop_id},
        )
        return str(store_profile(self.ws, profile, self.model, version))

    def _step_gate(self) -> tuple[dict[str, Any], dict[str, Any], str, str]:
        from steward.registry import run_gate

        version = int(self.ctx["challenger_version"])
        _say(self.progress, f"gating challenger v{version} against the champion")
        verdict = run_gate(self.ws, self.model, version=version, actor=self.actor)
        failed = [c.name for c in verdict.failed_checks]
        self.ctx["gate"] = {
            "passed": verdict.passed,
            "verdict_id": verdict.verdict_id,
            "champion_version": verdict.champion_version,
            "failed_checks": failed,
        }
        inputs = {"challenger_version": version, "champion_version": verdict.champion_version}
        outputs = {"passed": verdict.passed, "verdict_id": verdict.verdict_id, "failed_checks": failed}
        if verdict.passed:
            return inputs, outputs, f"v{version} passed the gate against v{verdict.champion_version}", "done"
        against = f"champion v{verdict.champion_version}" if verdict.champion_version is not None else "the absolute thresholds"
        shown = ", ".join(failed[:8]) + (f" (+{len(failed) - 8} more)" if len(failed) > 8 else "")
        reason = f"challenger v{version} lost to {against} on: {shown}"
        outputs["_decided"] = {"outcome": "champion_kept", "reason": reason}
        return inputs, outputs, reason, "failed"

    def _controller(self) -> Any:
        from steward.serving.rollout import RolloutController

        return RolloutController(self.ws)

    def _step_rollout(self) -> tuple[dict[str, Any], dict[str, Any], str, str]:
        from steward.spec import RolloutSpec

        version = int(self.ctx["challenger_version"])
        champion = self.ctx["gate"]["champion_version"]
        if not self.ctx.get("rollout"):
            return {}, {}, "skipped: the loop runs with --no-rollout (gate, then promote directly)", "skipped"
        if champion is None:
            return {}, {}, "skipped: there is no champion to roll out against (first model)", "skipped"
        spec = RolloutSpec.model_validate(self.ctx["rollout_spec"])
        ctl = self._controller()
        active = ctl.active(self.model)
        if active is not None and active.challenger_version == str(version):
            st = active  # started before a crash: keep watching it
        elif active is not None:
            raise Conflict(
                f"a rollout of {self.model} v{active.challenger_version} is already running",
                code="rollout.running",
                hint=f"finish it first: steward rollout abort {self.model}",
            )
        else:
            _say(self.progress, f"starting a {spec.mode} rollout of v{version} against v{champion}")
            st = ctl.start(self.model, spec, champion_version=str(champion), challenger_version=str(version), actor=LOOP_ACTOR)
        self.ctx["rollout_id"] = st.rollout_id
        inputs = {"policy": spec.model_dump(), "champion_version": champion, "challenger_version": version}
        return inputs, {"rollout_id": st.rollout_id, "mode": st.mode, "weight": st.weight}, f"{st.mode} rollout {st.rollout_id}", "done"

    def _step_decide(self) -> tuple[dict[str, Any], dict[str, Any], str, str]:
        from steward.registry import promote

        version = int(self.ctx["challenger_version"])
        champion = self.ctx["gate"]["champion_version"]
        rid = self.ctx.get("rollout_id")
        if not rid:
            against = f"champion v{champion}" if champion is not None else "the absolute thresholds (first model)"
            why = f"loop {self.run.loop_id} ({self.run.trigger}): v{version} passed the gate against {against}"
            promote(self.ws, self.model, version, reason=why, actor=self.actor)
            direct = {"champion_version": version, "previous": champion, "_decided": {"outcome": "promoted", "reason": why}}
            return {"rollout_id": None}, direct, why, "done"
        ctl = self._controller()
        timeout = float(self.ctx.get("timeout_s", 3600.0))
        _say(self.progress, f"waiting up to {timeout:g} s for rollout {rid} to finish")
        final = self.driver.wait(ctl, self.model, rid, timeout_s=timeout, keepalive=self.lock.check)
        if final is None:
            st = rollout_state(ctl, rid)
            if st.active:
                st = ctl.abort(self.model, actor=LOOP_ACTOR, reason=f"loop {self.run.loop_id} timed out after {timeout:g} s")
            why = f"rollout {rid} did not finish within {timeout:g} s and was aborted; champion v{champion} unchanged"
            return {"rollout_id": rid}, {"state": st.state, "_decided": {"outcome": "aborted", "reason": why}}, why, "failed"
        metrics = final.steps[-1].get("metrics", {}) if final.steps else {}
        outputs: dict[str, Any] = {"state": final.state, "rollout_reason": final.reason, "metrics": metrics}
        if final.state == "completed":
            why = f"v{version} completed its {final.mode} rollout ({final.reason}) and is the champion (was v{champion})"
            outputs["_decided"] = {"outcome": "promoted", "reason": why}
        elif final.state == "rolled_back":
            why = f"rollout of v{version} breached its SLOs and was rolled back: {final.reason}; champion v{champion} unchanged"
            outputs["_decided"] = {"outcome": "rolled_back", "reason": why}
        else:
            why = f"rollout {rid} was {final.state}: {final.reason}; champion v{champion} unchanged"
            outputs["_decided"] = {"outcome": "aborted", "reason": why}
        return {"rollout_id": rid}, outputs, why, "done"


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
        runner = _Runner(
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
            _say(progress, f"resuming loop {run.loop_id} ({run.trigger}) after step {run.done[-1] if run.done else '(none)'}")
            runner._audit("loop.resume", inputs={"done": run.done}, previous_owner=previous_owner, at_step=run.step)
            why = runner.check_resumable()
            if why is not None:
                return runner.finish("aborted", f"could not resume loop {run.loop_id}: {why}")
        else:
            runner._audit("loop.start", inputs={"trigger": trigger}, rollout=rollout, timeout_s=timeout_s, action_id=action_id)
            _say(progress, f"loop {run.loop_id} for {name} ({trigger})")
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
    from steward.monitoring import list_actions, mark_action
    from steward.registry import rollback

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
    from steward.monitoring import mark_action

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
