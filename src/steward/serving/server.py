"""The model server: loaded models, routing, micro-batching, shadow traffic, logging, rollouts.

:class:`ModelServer` is the library behind ``steward serve``; the HTTP edge
(:mod:`steward.api.routes_models`) only parses requests and calls it. It:

* loads each configured model by alias (hash-verified, in a worker thread) and
  keeps serving what it has when the registry is unreachable;
* polls the registry and the rollout table every ``poll_interval_s``: a moved alias
  loads the new version beside the old one and swaps it in atomically; requests
  already routed finish on the old batcher, so none is dropped, and a request that
  reaches a retired batcher (it was waiting on the online store) is routed again;
* routes each request with the pure router, batches it, logs it (failed model calls
  too, as ``status = "error"``), and for shadow rollouts hands a copy of the validated
  rows to a bounded queue served by separate tasks with a timeout; the challenger
  encodes them itself (its category codes and features are its own);
* evaluates running rollouts against their SLOs on its own tick (whatever the poll
  interval, 0 included) and records every step.

Challenger slots never run inline on the event loop: an untried model that is fast
most of the time and sometimes slow would stall every request while it computes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from steward.errors import BackendUnavailable, Conflict, LimitExceeded, NotFound, StewardError
from steward.observability.metrics import ServingMetrics
from steward.serving.batching import BatcherClosed, MicroBatcher
from steward.serving.predlog import PredictionLogger, PredictionRecord
from steward.serving.rollout import RolloutController, RolloutState, rules_from_spec
from steward.serving.router import Route, RoutePolicy, evaluate_step, route
from steward.serving.runtime import ModelRuntime, field_errors, validation_error
from steward.serving.stats import VariantWindow
from steward.spec import RolloutSpec, ServedModelSpec, ServingSpec

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["ModelServer", "PredictResult", "ServedModel", "VariantSlot"]

logger = logging.getLogger(__name__)

Loader = Callable[[str, str, list[str]], ModelRuntime]
Resolver = Callable[[str, str], str | None]
# a shadow copy: the validated rows the champion saw (raw values, not its encoding), its scores, the request id
ShadowCopy = tuple[list[Any], np.ndarray, str]


class ModelFailed(StewardError):
    """The model raised while predicting."""

    default_code = "serving.model_failed"
    http_status = 500


@dataclass
class VariantSlot:
    """One loaded model version with its own batcher and statistics window."""

    runtime: ModelRuntime
    batcher: MicroBatcher
    window: VariantWindow
    loaded_at: float = field(default_factory=time.time)

    @property
    def version(self) -> str:
        """Registry version."""
        return self.runtime.version


@dataclass
class ServedModel:
    """Everything the server holds for one model name."""

    name: str
    spec: ServedModelSpec
    champion: VariantSlot | None = None
    challenger: VariantSlot | None = None
    rollout: RolloutState | None = None
    policy: RoutePolicy = field(default_factory=RoutePolicy)
    last_error: str | None = None
    sticky_key: str | None = None
    assignments: OrderedDict[str, str] = field(default_factory=OrderedDict)
    shadow_queue: asyncio.Queue[ShadowCopy] | None = None
    shadow_tasks: list[asyncio.Task[None]] = field(default_factory=list)


@dataclass
class PredictResult:
    """The answer to one predict request."""

    request_id: str
    model: str
    version: str
    variant: str
    predictions: list[float]
    latency_ms: float

    def to_dict(self) -> dict[str, Any]:
        """JSON body."""
        return {
            "request_id": self.request_id,
            "model": self.model,
            "version": self.version,
            "variant": self.variant,
            "predictions": self.predictions,
            "latency_ms": round(self.latency_ms, 3),
        }


_ASSIGNMENTS_MAX = 100_000
# how often a request that met a retired batcher (a swap during its online lookup) is routed again
_SWAP_RETRIES = 3
# rollout evaluation tick: a quarter of the shortest step window, within these bounds; idle: every second
_TICK_MIN_S = 0.25
_TICK_MAX_S = 5.0
_TICK_IDLE_S = 1.0


class ModelServer:
    """Serve several models with rollouts.

    Args:
        ws: The workspace (registry, metadata store, lake, online features); None only with injected loaders.
        serving: The ``serving`` section (models, batching, logging, ...).
        metrics: Metrics (default: a fresh registry).
        loader: ``(name, alias_or_version, entity_keys) → ModelRuntime`` (default: the registry, hash-verified).
        resolver: ``(name, alias) → version or None`` (default: the registry).
        controller: Rollout controller (default: on the workspace's metadata store).
        prediction_logger: Prediction logger (default: to ``serving.prediction_log.table`` in the lake).
        online_features: ``rows → rows`` filling features for entity-key-only rows (default: the feature store).
    """

    def __init__(
        self,
        ws: Workspace | None,
        serving: ServingSpec | None = None,
        *,
        metrics: ServingMetrics | None = None,
        loader: Loader | None = None,
        resolver: Resolver | None = None,
        controller: RolloutController | None = None,
        prediction_logger: PredictionLogger | None = None,
        online_features: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.ws = ws
        self.serving = serving if serving is not None else (ws.spec.serving if ws is not None else ServingSpec())
        self.metrics = metrics or ServingMetrics()
        self._loader = loader or self._registry_loader
        self._resolver = resolver or self._registry_resolver
        self._controller = controller
        self._online = online_features
        self.models: dict[str, ServedModel] = {name: ServedModel(name, spec) for name, spec in self.serving.models.items()}
        self._predlog = prediction_logger
        self._tasks: list[asyncio.Task[None]] = []
        self._shadow_tasks: list[asyncio.Task[None]] = []
        self._reload_lock: asyncio.Lock | None = None
        self._started = False
        self._rng = random.Random()
        self._metric_children: dict[tuple[str, str, str], tuple[Any, Any, Any, Any]] = {}
        self.poll_count = 0

    # -- defaults wired to the workspace ------------------------------------------------
    def _registry_loader(self, name: str, ref: str, entity_keys: list[str]) -> ModelRuntime:
        from steward.serving.registry_link import load_runtime

        assert self.ws is not None
        return load_runtime(self.ws, name, ref, entity_keys=entity_keys)

    def _registry_resolver(self, name: str, alias: str) -> str | None:
        from steward.serving.registry_link import resolve_version

        assert self.ws is not None
        return resolve_version(self.ws, name, alias)

    @property
    def controller(self) -> RolloutController | None:
        """The rollout controller (None without a workspace)."""
        if self._controller is None and self.ws is not None:
            self._controller = RolloutController(self.ws)
        return self._controller

    @property
    def prediction_logger(self) -> PredictionLogger | None:
        """The prediction logger (None when logging is off)."""
        if self._predlog is None and self.serving.prediction_log.enabled and self.ws is not None:
            cfg = self.serving.prediction_log
            m = self.metrics
            self._predlog = PredictionLogger(
                lake=self.ws.lake,
                table=cfg.table,
                queue_size=cfg.queue_size,
                flush_rows=cfg.flush_rows,
                flush_interval_s=cfg.flush_interval_s,
                compact_every=cfg.compact_every,
                on_drop=m.log_dropped.inc,
                on_written=m.log_written.inc,
                on_error=m.log_errors.inc,
                on_depth=m.log_queue.set,
            )
        return self._predlog

    # -- lifecycle --------------------------------------------------------------------
    def add_model(self, name: str, spec: ServedModelSpec | None = None) -> ServedModel:
        """Configure one more model (``steward serve --model NAME[@ALIAS]``)."""
        m = self.models.get(name)
        if m is None:
            m = ServedModel(name, spec or ServedModelSpec())
            self.models[name] = m
        elif spec is not None:
            m.spec = spec
        return m

    async def start(self) -> None:
        """Start background work: the first load, the poll loop, the prediction logger. Never raises."""
        if self._started:
            return
        self._started = True
        self._reload_lock = asyncio.Lock()
        plog = self.prediction_logger
        if plog is not None:
            plog.start()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._poll_loop(), name="steward-poll"))
        self._tasks.append(loop.create_task(self._tick_loop(), name="steward-rollout-tick"))

    async def stop(self) -> None:
        """Stop polling, drain batchers, flush the prediction log."""
        for t in self._tasks + self._shadow_tasks:
            t.cancel()
        for t in self._tasks + self._shadow_tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        self._shadow_tasks.clear()
        for m in self.models.values():
            m.shadow_tasks.clear()
            m.shadow_queue = None
            for slot in (m.champion, m.challenger):
                if slot is not None:
                    await slot.batcher.aclose(drain_timeout_s=2.0)
        if self._predlog is not None:
            await asyncio.to_thread(self._predlog.close)
        self._started = False

    @property
    def ready(self) -> bool:
        """True when at least one model is configured and every configured model is loaded."""
        ok = bool(self.models) and all(m.champion is not None for m in self.models.values())
        self.metrics.ready.set(1 if ok else 0)
        return ok

    def readiness(self) -> dict[str, Any]:
        """Per-model load state for ``/readyz``."""
        return {
            "ready": self.ready,
            "models": {
                n: {"loaded": m.champion is not None, "version": m.champion.version if m.champion else None, "error": m.last_error}
                for n, m in self.models.items()
            },
        }

    async def _poll_loop(self) -> None:
        interval = self.serving.poll_interval_s
        while True:
            await self.refresh()
            if interval <= 0:
                # no polling: retry only until everything is loaded (rollouts are still evaluated by _tick_loop)
                if self.ready:
                    return
                await asyncio.sleep(1.0)
            else:
                await asyncio.sleep(min(interval, 5.0) if not self.ready else interval)

    def _tick_interval(self) -> float:
        """Seconds to the next rollout evaluation: a quarter of the shortest running step window, bounded."""
        windows = [
            m.rollout.spec.step_window_s for m in self.models.values() if m.rollout is not None and m.rollout.active and m.rollout.spec.auto
        ]
        if not windows:
            return _TICK_IDLE_S
        return min(_TICK_MAX_S, max(_TICK_MIN_S, min(windows) / 4.0))

    async def _tick_loop(self) -> None:
        # separate from the alias poll: with poll_interval_s = 0 (or a long one) running rollouts must still
        # advance and, above all, roll back on a breach
        while True:
            await asyncio.sleep(self._tick_interval())
            try:
                await self.tick_all()
            except Exception as exc:  # never let the evaluation task die
                logger.warning("rollout evaluation failed: %s", exc)

    async def refresh(self) -> dict[str, Any]:
        """One poll: pick up moved aliases and rollout changes, then evaluate running rollouts. Never raises."""
        self.poll_count += 1
        report: dict[str, Any] = {}
        for name in list(self.models):
            try:
                report[name] = await self.reload(name)
            except Exception as exc:
                self.metrics.poll_errors.inc()
                self.models[name].last_error = str(exc)
                report[name] = {"error": str(exc)}
                logger.warning("poll of %s failed (serving continues): %s", name, exc)
        await self.tick_all()
        return report

    def _slot(self, m: ServedModel, rt: ModelRuntime, variant: str) -> VariantSlot:
        cfg = self.serving.batching
        labels = (m.name, variant)
        hist = self.metrics.batch_size.labels(*labels)
        gauge = self.metrics.batch_queue.labels(*labels)
        window_s = m.spec.rollout.step_window_s if m.spec.rollout else 300.0
        batcher = MicroBatcher(
            rt.predict,
            max_batch_size=cfg.max_batch_size if cfg.enabled else 1,
            max_wait_ms=cfg.max_wait_ms if cfg.enabled else 0.0,
            on_batch=hist.observe,
            on_depth=gauge.set,
            name=f"{m.name}-{variant}",
            # every variant gets the same adaptive rule (shadow copies never run inline: they pass
            # inline=False): a slow call raises the moving average and sends it to the worker thread.
            # With a 10 % canary on benchmarks/serve_vs_mlflow.py, sending challengers to the thread
            # always gave 5,616 req/s (p99 7.8 ms) against 6,730 (p99 3.8 ms) inline.
            inline_below_ms=cfg.inline_below_ms if cfg.enabled else 0.0,
        )
        return VariantSlot(rt, batcher, VariantWindow(window_s))

    async def _load(self, m: ServedModel, ref: str, variant: str) -> VariantSlot:
        rt = await asyncio.to_thread(self._loader, m.name, ref, list(m.spec.entity_keys))
        # warm up off the loop so the first real request does not pay for lazy initialisation
        if rt.feature_names:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(rt.predict, np.full((1, len(rt.feature_names)), np.nan))
        self.metrics.reloads.labels(m.name, "loaded").inc()
        return self._slot(m, rt, variant)

    def _set_loaded(self, m: ServedModel, variant: str, old: VariantSlot | None, new: VariantSlot | None) -> None:
        if old is not None:
            self.metrics.loaded.labels(m.name, old.version, variant).set(0)
        if new is not None:
            self.metrics.loaded.labels(m.name, new.version, variant).set(1)

    async def _retire(self, slot: VariantSlot | None) -> None:
        if slot is not None:
            # requests already routed to it finish first: nothing is dropped
            await slot.batcher.aclose()

    async def reload(self, name: str) -> dict[str, Any]:
        """Re-read ``name``'s aliases and rollout; load what changed and swap it in atomically.

        Raises:
            NotFound: the model is not configured.
            BackendUnavailable: the registry or metadata store is unreachable (the loaded versions keep serving).
        """
        m = self.models.get(name)
        if m is None:
            raise NotFound(
                f"model {name!r} is not served here",
                code="serving.model_not_served",
                hint=f"served: {', '.join(sorted(self.models)) or 'none'}",
            )
        assert self._reload_lock is not None or not self._started
        lock = self._reload_lock or asyncio.Lock()
        async with lock:
            changes: dict[str, Any] = {}
            want = await asyncio.to_thread(self._resolver, name, m.spec.alias)
            if want is None:
                m.last_error = f"alias {m.spec.alias!r} of {name} is not set"
                raise NotFound(
                    m.last_error, code="serving.alias_not_found", hint=f"set it with the registry (steward registry promote {name} ...)"
                )
            if m.champion is None or m.champion.version != want:
                old = m.champion
                if m.challenger is not None and m.challenger.version == want:
                    new = m.challenger  # promoted: the challenger already loaded becomes the champion
                    m.challenger = None
                    self._set_loaded(m, "challenger", new, None)
                else:
                    new = await self._load(m, want, "champion")
                m.champion = new
                self._set_loaded(m, "champion", old, new)
                changes["champion"] = {"from": old.version if old else None, "to": want}
                if old is not None and old is not m.challenger:
                    asyncio.get_running_loop().create_task(self._retire(old))
            m.last_error = None
            await self._sync_rollout(m, changes)
            return {
                "champion": m.champion.version if m.champion else None,
                "challenger": m.challenger.version if m.challenger else None,
                "changes": changes,
            }

    async def _sync_rollout(self, m: ServedModel, changes: dict[str, Any]) -> None:
        ctl = self.controller
        if ctl is None:
            return
        st = await asyncio.to_thread(ctl.active, m.name)
        await self._apply_rollout_state(m, st, changes)

    async def _apply_rollout_state(self, m: ServedModel, st: RolloutState | None, changes: dict[str, Any] | None = None) -> None:
        changes = changes if changes is not None else {}
        if st is None:
            m.rollout = None
            m.sticky_key = None
            m.policy = RoutePolicy()
            if m.challenger is not None:
                gone, m.challenger = m.challenger, None
                self._set_loaded(m, "challenger", gone, None)
                changes["challenger"] = {"from": gone.version, "to": None}
                asyncio.get_running_loop().create_task(self._retire(gone))
            self._stop_shadow(m)
            return
        if st.challenger_version and (m.challenger is None or m.challenger.version != st.challenger_version):
            old = m.challenger
            m.challenger = await self._load(m, st.challenger_version, "challenger")
            self._set_loaded(m, "challenger", old, m.challenger)
            changes["challenger"] = {"from": old.version if old else None, "to": st.challenger_version}
            if old is not None:
                asyncio.get_running_loop().create_task(self._retire(old))
        if m.rollout is None or m.rollout.rollout_id != st.rollout_id or m.rollout.step_index != st.step_index:
            for slot in (m.champion, m.challenger):
                if slot is not None:
                    # windows restart with each step; at least a minute of samples is kept for the p99
                    slot.window.window_s = max(st.spec.step_window_s, 60.0)
                    slot.window.reset()
        m.rollout = st
        m.sticky_key = st.spec.sticky_key
        m.policy = st.route_policy()
        self.metrics.rollout_weight.labels(m.name, st.mode).set(st.weight)
        if st.mode == "shadow":
            self._ensure_shadow(m)
        else:
            self._stop_shadow(m)

    # -- rollouts -----------------------------------------------------------------------
    def _require_controller(self) -> RolloutController:
        ctl = self.controller
        if ctl is None:
            raise Conflict("rollouts need a workspace (metadata store)", code="rollout.no_workspace")
        return ctl

    async def start_rollout(self, name: str, spec: RolloutSpec | None = None, *, actor: str) -> RolloutState:
        """Start a rollout of ``name``'s challenger alias (policy from the spec unless given) and apply it now."""
        m = self._served(name)
        policy = spec or m.spec.rollout or RolloutSpec()
        ctl = self._require_controller()
        challenger = await asyncio.to_thread(self._resolver, name, policy.challenger_alias)
        if challenger is None:
            raise NotFound(
                f"{name} has no {policy.challenger_alias!r} version to roll out",
                code="rollout.no_challenger",
                hint="train and register one first",
            )
        champion = m.champion.version if m.champion else await asyncio.to_thread(self._resolver, name, m.spec.alias)
        if champion == challenger:
            raise Conflict(f"{name} v{challenger} already is the champion", code="rollout.same_version")
        st = await asyncio.to_thread(lambda: ctl.start(name, policy, champion_version=champion, challenger_version=challenger, actor=actor))
        self.metrics.rollout_events.labels(name, "start").inc()
        await self._apply_rollout_state(m, st)
        return st

    async def rollout_action(
        self, name: str, action: str, *, actor: str, reason: str = "", weight: float | None = None, force: bool = False
    ) -> RolloutState:
        """``promote``, ``abort`` or ``weight`` (blue/green switch and switch back), applied at once."""
        m = self._served(name)
        ctl = self._require_controller()
        if action == "promote":
            st = await asyncio.to_thread(lambda: ctl.promote(name, actor=actor, reason=reason or "promoted by operator", force=force))
        elif action == "abort":
            st = await asyncio.to_thread(lambda: ctl.abort(name, actor=actor, reason=reason or "aborted by operator"))
        elif action == "weight":
            if weight is None:
                raise Conflict("a weight is needed", code="rollout.weight_missing")
            st = await asyncio.to_thread(lambda: ctl.set_weight(name, weight, actor=actor, reason=reason or f"set to {weight:g}%"))
        else:
            raise NotFound(f"unknown rollout action {action!r}", code="rollout.unknown_action")
        self.metrics.rollout_events.labels(name, action).inc()
        if st.active:
            await self._apply_rollout_state(m, st)
        else:
            await self._apply_rollout_state(m, None)
            if action == "promote":
                with contextlib.suppress(StewardError):
                    await self.reload(name)
        return st

    async def tick_all(self) -> None:
        """Evaluate every running rollout once (called by the poll loop)."""
        for m in list(self.models.values()):
            if m.rollout is not None and m.rollout.active and m.rollout.spec.auto:
                try:
                    await self.tick(m.name)
                except Exception as exc:
                    logger.warning("rollout evaluation of %s failed: %s", m.name, exc)

    def variant_stats(self, name: str) -> dict[str, Any]:
        """Window statistics per variant (JSON-ready)."""
        m = self._served(name)
        out: dict[str, Any] = {}
        for label, slot in (("champion", m.champion), ("challenger", m.challenger)):
            if slot is not None:
                s = slot.window.stats()
                out[label] = {
                    "version": slot.version,
                    "requests": s.requests,
                    "errors": s.errors,
                    "error_rate": s.error_rate,
                    "p99_ms": None if math.isnan(s.p99_ms) else s.p99_ms,
                    "mean_prediction": None if math.isnan(s.mean_prediction) else s.mean_prediction,
                    "disagreement": None if math.isnan(s.disagreement) else s.disagreement,
                }
        return out

    async def tick(self, name: str) -> RolloutState | None:
        """Evaluate ``name``'s running rollout against its SLOs and apply the decision (advance, rollback, complete)."""
        m = self._served(name)
        st = m.rollout
        ctl = self.controller
        if st is None or not st.active or ctl is None or m.champion is None or m.challenger is None:
            return st
        rules = rules_from_spec(st.spec)
        chall, champ = m.challenger.window.stats(), m.champion.window.stats()
        decision = evaluate_step(rules, st.step_index, ctl.step_elapsed_s(st), chall, champ, progressive=st.mode == "canary")
        if decision.action == "hold":
            return st
        metrics = {"challenger": self.variant_stats(name).get("challenger"), "champion": self.variant_stats(name).get("champion")}
        # under the reload lock: a concurrent reload must not re-apply the rollout state this decision replaces
        async with self._reload_lock or asyncio.Lock():
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
            self.metrics.rollout_events.labels(name, decision.action).inc()
            await self._apply_rollout_state(m, new_state if new_state is not None and new_state.active else None)
        if decision.action == "complete":
            with contextlib.suppress(StewardError):
                await self.reload(name)
        return new_state

    # -- shadow ----------------------------------------------------------------------
    def _ensure_shadow(self, m: ServedModel) -> None:
        if m.shadow_queue is not None:
            return
        cfg = self.serving.shadow
        m.shadow_queue = asyncio.Queue(maxsize=cfg.queue_size)
        loop = asyncio.get_running_loop()
        for i in range(cfg.workers):
            task = loop.create_task(self._shadow_worker(m, m.shadow_queue), name=f"steward-shadow-{m.name}-{i}")
            m.shadow_tasks.append(task)
            self._shadow_tasks.append(task)

    def _stop_shadow(self, m: ServedModel) -> None:
        if m.shadow_queue is None:
            return
        m.shadow_queue = None
        for task in m.shadow_tasks:
            task.cancel()  # pending copies are dropped: they were never going to be answered
        self._shadow_tasks = [t for t in self._shadow_tasks if t not in m.shadow_tasks]
        m.shadow_tasks.clear()
        self.metrics.shadow_queue.labels(m.name).set(0)

    async def _shadow_predict(self, m: ServedModel, slot: VariantSlot, rows: list[Any]) -> tuple[list[Any], np.ndarray]:
        """The challenger's answer to a shadow copy: its own online features, validation and encoding."""
        if m.spec.entity_keys:
            rows = await self._fill_online(m, slot, rows)
        # fields only the champion takes are no error of the challenger's (a retrain may drop a feature)
        keep = {*slot.runtime.feature_names, *m.spec.entity_keys}
        rows = [{k: v for k, v in r.items() if k in keep} for r in rows]
        errors = field_errors(slot.runtime.schema, rows)
        if errors:
            raise validation_error(errors)
        # category codes are relearned at every training run: the champion's matrix would mean other categories here
        x = slot.runtime.to_input(rows)  # type: ignore[attr-defined]
        return rows, await slot.batcher.submit(x, inline=False)  # a copy nobody waits for never holds the event loop

    async def _shadow_worker(self, m: ServedModel, q: asyncio.Queue[ShadowCopy]) -> None:
        timeout = self.serving.shadow.timeout_ms / 1000.0
        gauge = self.metrics.shadow_queue.labels(m.name)
        while True:
            rows, champion_scores, request_id = await q.get()
            gauge.set(q.qsize())
            slot = m.challenger
            if slot is None:
                continue
            t0 = time.perf_counter()
            try:
                rows, scores = await asyncio.wait_for(self._shadow_predict(m, slot, rows), timeout)
            except BatcherClosed:
                continue  # the challenger was swapped out meanwhile: nothing to compare against
            except TimeoutError:
                slot.window.record((time.perf_counter() - t0) * 1000.0, True)
                self.metrics.shadow_errors.labels(m.name, "timeout").inc()
                continue
            except Exception as exc:
                slot.window.record((time.perf_counter() - t0) * 1000.0, True)
                self.metrics.shadow_errors.labels(m.name, "error").inc()
                logger.debug("shadow challenger of %s failed: %s", m.name, exc)
                continue
            latency = (time.perf_counter() - t0) * 1000.0
            slot.window.record(latency, False, float(np.mean(scores)) if len(scores) else math.nan)
            diff = np.abs(scores - champion_scores)
            disagree = (scores >= 0.5) != (champion_scores >= 0.5)
            self.metrics.shadow_compared.labels(m.name).inc(len(scores))
            if disagree.any():
                self.metrics.shadow_disagreements.labels(m.name).inc(int(disagree.sum()))
            for d, dd in zip(diff, disagree, strict=True):
                self.metrics.shadow_abs_diff.labels(m.name).observe(float(d))
                slot.window.record_comparison(bool(dd))
            self._log(m, slot, "shadow", request_id, rows, scores, latency, shadow=True)

    # -- requests --------------------------------------------------------------------
    def _served(self, name: str) -> ServedModel:
        m = self.models.get(name)
        if m is None:
            raise NotFound(
                f"model {name!r} is not served here",
                code="serving.model_not_served",
                hint=f"served: {', '.join(sorted(self.models)) or 'none'}",
            )
        return m

    @contextlib.contextmanager
    def expect(self, name: str) -> Iterator[None]:
        """Mark a request to ``name`` as arriving (lets the batcher wait for it)."""
        m = self.models.get(name)
        slot = m.champion if m is not None else None
        if slot is None:
            yield
            return
        with slot.batcher.expect():
            yield

    async def _fill_online(self, m: ServedModel, slot: VariantSlot, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        keys = m.spec.entity_keys
        if not keys:
            return rows
        names = slot.runtime.feature_names
        need = [i for i, r in enumerate(rows) if isinstance(r, dict) and any(n not in r for n in names)]
        if not need:
            return rows
        fetch = self._online
        if fetch is None:
            if self.ws is None:
                return rows
            ws = self.ws

            def fetch(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
                from steward.features import get_online_features

                return list(get_online_features(ws, rs))

        # the feature store needs the entity keys and the request-time columns the caller sent
        subset = [dict(rows[i]) for i in need]
        try:
            filled = await asyncio.to_thread(fetch, subset)
        except StewardError:
            raise
        except Exception as exc:
            raise BackendUnavailable(
                f"online feature store failed: {exc}", code="serving.online_features", hint="check storage.online_store_url"
            ) from exc
        out = list(rows)
        for i, feats in zip(need, filled, strict=True):
            # values the caller sent win over stored ones
            out[i] = {**{k: v for k, v in (feats or {}).items() if k in names or k in keys}, **rows[i]}
        return out

    async def predict(self, name: str, rows: list[Any], *, key: str | None = None, request_id: str | None = None) -> PredictResult:
        """Validate, route, batch, predict, log.

        Raises:
            NotFound: the model is not served.
            BackendUnavailable: the model is not loaded yet (503).
            ValidationFailed: rows do not match the model's schema (422, every bad field named).
            LimitExceeded: more rows than ``serving.max_rows``.
        """
        m = self._served(name)
        champion = m.champion
        if champion is None:
            raise BackendUnavailable(f"model {name} is not loaded yet", code="serving.not_loaded", hint=m.last_error or "see /readyz")
        if len(rows) > self.serving.max_rows:
            raise LimitExceeded(f"{len(rows)} rows > serving.max_rows = {self.serving.max_rows}", code="serving.too_many_rows")
        rid = request_id or uuid.uuid4().hex
        t0 = time.perf_counter()
        sk = m.sticky_key
        if sk is not None and rows and isinstance(rows[0], dict) and sk in rows[0]:
            # the sticky field routes; it is not a model input
            if key is None:
                key = str(rows[0][sk])
            rows = [{k: v for k, v in r.items() if k != sk} if isinstance(r, dict) else r for r in rows]
        r: Route = route(m.policy, key, self._rng.random()) if m.policy.mode != "none" else Route("champion")
        slot = m.challenger if r.serve == "challenger" and m.challenger is not None else champion
        label = r.variant_label if slot is not m.champion or r.serve == "champion" else "champion"
        raw = rows
        if m.spec.entity_keys:
            rows = await self._fill_online(m, slot, rows)
        errors = field_errors(slot.runtime.schema, rows)
        if errors:
            raise validation_error(errors)
        x = slot.runtime.to_input(rows)  # type: ignore[attr-defined]
        try:
            scores = await slot.batcher.submit(x)
        except BatcherClosed:
            slot, label, rows, scores = await self._resubmit(m, r, raw, rid, t0)
        except Exception as exc:
            raise self._model_failed(m, slot, label, rid, rows, t0, exc) from exc
        version = slot.version
        latency = (time.perf_counter() - t0) * 1000.0
        preds = scores.tolist()
        slot.window.record(latency, False, sum(preds) / len(preds) if preds else math.nan)
        met = self.metrics
        ok, duration, nrows, positive = self._children(name, version, label)
        ok.inc()
        duration.observe(latency / 1000.0)
        nrows.inc(len(preds))
        positives = sum(1 for p in preds if p >= 0.5)
        if positives:
            positive.inc(positives)
        self._log(m, slot, label, rid, rows, scores, latency)
        if r.shadow and m.challenger is not None and m.shadow_queue is not None:
            try:
                m.shadow_queue.put_nowait((rows, scores, rid))
                met.shadow_queue.labels(name).set(m.shadow_queue.qsize())
            except asyncio.QueueFull:
                met.shadow_dropped.labels(name).inc()
        if m.rollout is not None and m.rollout.mode == "ab":
            m.assignments[rid] = label
            if len(m.assignments) > _ASSIGNMENTS_MAX:
                m.assignments.popitem(last=False)
        return PredictResult(rid, name, version, label, preds, latency)

    async def _resubmit(
        self, m: ServedModel, r: Route, raw: list[Any], rid: str, t0: float
    ) -> tuple[VariantSlot, str, list[Any], np.ndarray]:
        """Route a request again after a swap retired its version under it (it waited on the online store).

        Nothing ran on the retired version, so this is no model error: the request goes to whatever
        serves its route now (revalidated and re-encoded: the new version's schema may differ).
        """
        for _ in range(_SWAP_RETRIES):
            slot = m.challenger if r.serve == "challenger" and m.challenger is not None else m.champion
            if slot is None:
                break
            label = r.variant_label if slot is not m.champion or r.serve == "champion" else "champion"
            rows = await self._fill_online(m, slot, raw) if m.spec.entity_keys else raw
            errors = field_errors(slot.runtime.schema, rows)
            if errors:
                raise validation_error(errors)
            x = slot.runtime.to_input(rows)  # type: ignore[attr-defined]
            try:
                return slot, label, rows, await slot.batcher.submit(x)
            except BatcherClosed:
                logger.debug("model %s v%s was swapped out under request %s", m.name, slot.version, rid)
                continue
            except Exception as exc:
                raise self._model_failed(m, slot, label, rid, rows, t0, exc) from exc
        raise BackendUnavailable(
            f"model {m.name} was swapped several times during this request", code="serving.swapping", hint="retry the request"
        )

    def _model_failed(
        self, m: ServedModel, slot: VariantSlot, label: str, rid: str, rows: list[Any], t0: float, exc: Exception
    ) -> ModelFailed:
        """Count, log and describe a failed model call (the caller raises the result)."""
        name, version = m.name, slot.version
        latency = (time.perf_counter() - t0) * 1000.0
        slot.window.record(latency, True)
        self.metrics.requests.labels(name, version, label, "error").inc()
        self.metrics.duration.labels(name, version, label).observe(latency / 1000.0)
        logger.error("model %s v%s failed on request %s", name, version, rid, exc_info=exc)
        failed = ModelFailed(
            f"model {name} v{version} failed: {type(exc).__name__}",
            hint="see the server log for this request id",
            details={"request_id": rid},
        )
        # logged so the availability SLI counts it (a rejected request, 4xx, never gets this far)
        self._log(m, slot, label, rid, rows, None, latency, error=failed.code)
        return failed

    def _children(self, name: str, version: str, label: str) -> tuple[Any, Any, Any, Any]:
        """The labelled metric children of one (model, version, variant), looked up once."""
        key = (name, version, label)
        got = self._metric_children.get(key)
        if got is None:
            met = self.metrics
            got = (
                met.requests.labels(name, version, label, "ok"),
                met.duration.labels(name, version, label),
                met.rows.labels(name, version, label),
                met.predicted_positive.labels(name, label),
            )
            self._metric_children[key] = got
        return got

    def _log(
        self,
        m: ServedModel,
        slot: VariantSlot,
        label: str,
        rid: str,
        rows: Sequence[Mapping[str, Any]],
        scores: np.ndarray | None,
        latency: float,
        *,
        shadow: bool = False,
        error: str | None = None,
    ) -> None:
        """Queue one record per row; ``scores`` None with an ``error`` code for a failed model call."""
        plog = self._predlog if self._predlog is not None else (self.prediction_logger if self.serving.prediction_log.enabled else None)
        if plog is None:
            return
        now = time.time()
        names = slot.runtime.feature_names
        # entity keys are logged too: delayed labels join on them (flight, time_hour, ...)
        keys = [k for k in m.spec.entity_keys if k not in names]
        per_row = latency / max(1, len(rows))
        status = "ok" if error is None else "error"
        for i, row in enumerate(rows):
            feats = row if len(row) == len(names) and not keys else {n: row.get(n) for n in (*names, *keys)}
            plog.log(
                PredictionRecord(
                    rid if len(rows) == 1 else f"{rid}:{i}",
                    now,
                    m.name,
                    slot.version,
                    label,
                    feats,
                    None if scores is None else float(scores[i]),
                    per_row,
                    shadow,
                    status,
                    error,
                )
            )

    async def explain(self, name: str, row: Any) -> dict[str, Any]:
        """Local attributions of the champion for one row (validated like a prediction)."""
        m = self._served(name)
        slot = m.champion
        if slot is None:
            raise BackendUnavailable(f"model {name} is not loaded yet", code="serving.not_loaded")
        rows = await self._fill_online(m, slot, [row]) if m.spec.entity_keys else [row]
        errors = field_errors(slot.runtime.schema, rows, prefix="row")
        if errors:
            for e in errors:
                e["field"] = e["field"].replace("row.0", "row", 1)
            raise validation_error(errors)
        out = await asyncio.to_thread(slot.runtime.explain, rows[0])
        return {"model": name, "version": slot.version, **out}

    def record_outcome(self, name: str, request_id: str, outcome: str) -> str:
        """Count an observed outcome against the variant that served ``request_id`` (A/B outcome metrics).

        Raises:
            NotFound: the request id is unknown (too old, or not served in an A/B rollout here).
        """
        m = self._served(name)
        variant = m.assignments.get(request_id)
        if variant is None:
            raise NotFound(f"request {request_id} is not a known A/B request of {name}", code="serving.unknown_request")
        self.metrics.ab_outcomes.labels(name, variant, outcome).inc()
        return variant

    def describe(self, name: str) -> dict[str, Any]:
        """Versions, aliases, schema and rollout state of one model (JSON-ready)."""
        m = self._served(name)
        out: dict[str, Any] = {
            "name": name,
            "alias": m.spec.alias,
            "loaded": m.champion is not None,
            "champion": self._slot_info(m.champion),
            "challenger": self._slot_info(m.challenger),
            "rollout": m.rollout.to_dict() if m.rollout else None,
            "routing": {"mode": m.policy.mode, "weight": m.policy.weight},
            "entity_keys": list(m.spec.entity_keys),
            "input_schema": m.champion.runtime.schema.to_json_schema() if m.champion else None,
            "last_error": m.last_error,
        }
        if m.champion is not None:
            out["stats"] = self.variant_stats(name)
        return out

    @staticmethod
    def _slot_info(slot: VariantSlot | None) -> dict[str, Any] | None:
        if slot is None:
            return None
        rt = slot.runtime
        return {
            "version": slot.version,
            "flavor": getattr(rt, "flavor", None),
            "features": list(rt.feature_names),
            "loaded_at": slot.loaded_at,
            "batches": slot.batcher.stats.batches,
            "rows": slot.batcher.stats.rows,
        }
