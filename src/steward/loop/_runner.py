"""One loop run, step by step: training set → train → gate → rollout → decide.

Each step's inputs and outputs are saved in the ``loop_runs`` row and appended to the
audit trail before the next step starts (:meth:`LoopRunner.execute`), so a crash resumes
at the first unfinished step with the saved context; :meth:`LoopRunner.check_resumable`
says when that context no longer holds. :func:`steward.loop.run_loop` takes the lock,
creates or resumes the run and hands it to a :class:`LoopRunner`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import polars as pl

from steward._primitives import Progress, report_progress, utcnow
from steward.data.faults import fault
from steward.errors import Conflict, NotFound
from steward.loop._driver import LOOP_ACTOR, RolloutDriver, rollout_state
from steward.loop._lock import LoopLock
from steward.loop._state import STEPS, LoopResult, LoopRun, LoopStepRecord, finish_run, save_run
from steward.modeling import score_frame
from steward.monitoring import build_reference_profile, profile_for_model, store_profile
from steward.registry import get_alias_version, load_verified_model, promote, run_gate, verify_version
from steward.registry.versions import get_model_version
from steward.serving.rollout import RolloutController
from steward.spec import RolloutSpec
from steward.training import train_model

if TYPE_CHECKING:
    from steward.features.training_set import TrainingSet
    from steward.workspace import Workspace

__all__ = ["LOOP_TAG", "Builder", "LoopRunner", "say"]

logger = logging.getLogger(__name__)

Builder = Callable[..., "TrainingSet"]

LOOP_TAG = "steward.loop_id"
"""The run tag naming the loop that trained a challenger (a resumed loop finds it by this tag)."""


def say(progress: Progress | None, msg: str) -> None:
    """Log ``msg`` and tell ``progress``."""
    logger.info(msg)
    report_progress(progress, msg)


class LoopRunner:
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
        return get_alias_version(self.ws, self.model, "champion")

    def finish(self, outcome: str, reason: str) -> LoopResult:
        finish_run(self.ws.metadata, self.run, outcome=outcome, reason=reason)
        action = {"promoted": "loop.promote", "rolled_back": "loop.rollback", "champion_kept": "loop.champion_kept"}.get(
            outcome, "loop.abort"
        )
        self._audit(action, outputs={"outcome": outcome, "champion_version": self._champion()}, reason=reason)
        say(self.progress, f"loop {self.run.loop_id}: {outcome}: {reason}")
        return self.result()

    # -- resume checks ------------------------------------------------------------------
    def check_resumable(self) -> str | None:
        """Why the saved context no longer holds (then the loop aborts), or None."""
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
        say(self.progress, "building a fresh training set from the newest data versions")
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
            say(self.progress, f"challenger v{version} was already trained by this loop (run {run_id}); not retraining")
            self.ctx.update(challenger_version=version, run_id=run_id)
            profile = self._ensure_profile(version, ts)
            return {"data_versions": pins}, {"version": version, "run_id": run_id, "profile": profile}, "recovered", "done"
        if ts is None:
            say(self.progress, "rebuilding the training set at its pinned versions")
            ts = self._build(pins)
        say(self.progress, f"training a challenger for {self.model}")
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
        try:
            profile_for_model(self.ws, self.model, version)
        except NotFound:
            pass  # a training stage that logs no profile: build one here from the training set
        else:
            return "logged with the training run"
        return self._profile(ts if ts is not None else self._build(self.ctx.get("data_versions")), version)

    def _profile(self, ts: TrainingSet, version: int) -> str:
        """Build and store the challenger's reference profile so monitoring can compare windows with it later."""
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
        version = int(self.ctx["challenger_version"])
        say(self.progress, f"gating challenger v{version} against the champion")
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

    def _controller(self) -> RolloutController:
        return RolloutController(self.ws)

    def _step_rollout(self) -> tuple[dict[str, Any], dict[str, Any], str, str]:
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
            say(self.progress, f"starting a {spec.mode} rollout of v{version} against v{champion}")
            verify_version(self.ws, self.model, version)  # verify, then commit: no rollout of a version that cannot load
            st = ctl.start(self.model, spec, champion_version=str(champion), challenger_version=str(version), actor=LOOP_ACTOR)
        self.ctx["rollout_id"] = st.rollout_id
        inputs = {"policy": spec.model_dump(), "champion_version": champion, "challenger_version": version}
        return inputs, {"rollout_id": st.rollout_id, "mode": st.mode, "weight": st.weight}, f"{st.mode} rollout {st.rollout_id}", "done"

    def _step_decide(self) -> tuple[dict[str, Any], dict[str, Any], str, str]:
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
        say(self.progress, f"waiting up to {timeout:g} s for rollout {rid} to finish")
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
