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

Its parts, one module each: :mod:`~steward.serving.slots` (load, swap, retire),
:mod:`~steward.serving.predict` (the request path), :mod:`~steward.serving.shadow`
(shadow traffic), :mod:`~steward.serving.orchestration` (applying and evaluating rollouts)
and :mod:`~steward.serving.live` (the thread-safe handle :mod:`steward.ops` drives it through).
Starting or changing a rollout is an operation of :mod:`steward.ops`; the server applies it.

Challenger slots never run inline on the event loop: an untried model that is fast
most of the time and sometimes slow would stall every request while it computes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from steward._primitives import make_actor
from steward.errors import NotFound
from steward.observability.metrics import ServingMetrics
from steward.serving.live import LiveHandle
from steward.serving.orchestration import RolloutOrchestrator
from steward.serving.predict import ModelFailed, OnlineFeatures, PredictPath, PredictResult
from steward.serving.predlog import PredictionLogger
from steward.serving.registry_link import load_runtime, resolve_version
from steward.serving.rollout import RolloutController, RolloutState
from steward.serving.runtime import ModelRuntime
from steward.serving.shadow import ShadowTraffic
from steward.serving.slots import Degraded, Loader, ServedModel, Slots, VariantSlot
from steward.spec import ServedModelSpec, ServingSpec

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["ModelFailed", "ModelServer", "PredictResult", "ServedModel", "VariantSlot"]

logger = logging.getLogger(__name__)

Resolver = Callable[[str, str], str | None]
SERVE_ACTOR = make_actor("system", "serve")


class ModelServer(PredictPath):
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
        online_features: OnlineFeatures | None = None,
    ) -> None:
        self.ws = ws
        self.serving = serving if serving is not None else (ws.spec.serving if ws is not None else ServingSpec())
        self.metrics = metrics or ServingMetrics()
        self._resolver = resolver or self._registry_resolver
        self._controller = controller
        self._online = online_features
        self.models: dict[str, ServedModel] = {name: ServedModel(name, spec) for name, spec in self.serving.models.items()}
        self._predlog = prediction_logger
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_lock: asyncio.Lock | None = None
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.Random()
        self._metric_children: dict[tuple[str, str, str], tuple[Any, Any, Any, Any]] = {}
        self.poll_count = 0
        self.slots = Slots(self.serving, self.metrics, loader or self._registry_loader, on_degraded=self._record_degraded)
        self.shadow = ShadowTraffic(self.serving, self.metrics, fill_online=self.fill_online, log=self.log_predictions)
        self.rollouts = RolloutOrchestrator(self)
        self.live = LiveHandle(self)
        """The thread-safe handle through which :mod:`steward.ops` reads and changes this server."""

    # -- defaults wired to the workspace ------------------------------------------------
    def _registry_loader(self, name: str, ref: str, entity_keys: list[str]) -> ModelRuntime:
        assert self.ws is not None
        return load_runtime(self.ws, name, ref, entity_keys=entity_keys)

    def _registry_resolver(self, name: str, alias: str) -> str | None:
        assert self.ws is not None
        return resolve_version(self.ws, name, alias)

    def _record_degraded(self, m: ServedModel, degraded: Degraded | None) -> None:
        if self.ws is None:
            return
        action, details = ("serving.recovered", {}) if degraded is None else ("serving.degraded", degraded.to_dict())
        self.ws.audit.append(action, f"model:{m.name}", actor=SERVE_ACTOR, model=m.name, details=details)

    def resolve(self, name: str, alias: str) -> str | None:
        """The version ``alias`` of ``name`` points at, as this server resolves it (blocking: call it off the event loop)."""
        return self._resolver(name, alias)

    @property
    def controller(self) -> RolloutController | None:
        """The rollout controller (None without a workspace)."""
        if self._controller is None and self.ws is not None:
            self._controller = RolloutController(self.ws)
        return self._controller

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the server runs on (None before :meth:`start` and after :meth:`stop`)."""
        return self._loop

    @property
    def reload_lock(self) -> asyncio.Lock:
        """The lock that serialises reloads and rollout decisions (a fresh one before :meth:`start`)."""
        return self._reload_lock or asyncio.Lock()

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
        loop = self._loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._poll_loop(), name="steward-poll"))
        self._tasks.append(loop.create_task(self._tick_loop(), name="steward-rollout-tick"))

    async def stop(self) -> None:
        """Stop polling, drain batchers, flush the prediction log."""
        tasks = self._tasks + self.shadow.tasks
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        self.shadow.forget(list(self.models.values()))
        for m in self.models.values():
            await self.slots.close(m)
        if self._predlog is not None:
            await asyncio.to_thread(self._predlog.close)
        self._started = False
        self._loop = None

    @property
    def ready(self) -> bool:
        """True when at least one model is configured and every configured model is loaded."""
        ok = bool(self.models) and all(m.champion is not None for m in self.models.values())
        self.metrics.ready.set(1 if ok else 0)
        return ok

    def readiness(self) -> dict[str, Any]:
        """Per-model load state for ``/readyz``.

        ``degraded`` lists the models serving a fallback (their alias's version fails verification);
        each model's ``degraded`` says what was wanted, what is served and why (None when healthy).
        """
        return {
            "ready": self.ready,
            "degraded": sorted(n for n, m in self.models.items() if m.degraded is not None),
            "models": {
                n: {
                    "loaded": m.champion is not None,
                    "version": m.champion.version if m.champion else None,
                    "error": m.last_error,
                    "degraded": m.degraded.to_dict() if m.degraded else None,
                }
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

    async def _tick_loop(self) -> None:
        # separate from the alias poll: with poll_interval_s = 0 (or a long one) running rollouts must still
        # advance and, above all, roll back on a breach
        while True:
            await asyncio.sleep(self.rollouts.tick_interval())
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

    async def reload(self, name: str) -> dict[str, Any]:
        """Re-read ``name``'s aliases and rollout; load what changed and swap it in atomically.

        Raises:
            NotFound: the model is not configured.
            BackendUnavailable: the registry or metadata store is unreachable (the loaded versions keep serving).
        """
        m = self.served(name)
        assert self._reload_lock is not None or not self._started
        async with self.reload_lock:
            changes: dict[str, Any] = {}
            want = await asyncio.to_thread(self._resolver, name, m.spec.alias)
            if want is None:
                m.last_error = f"alias {m.spec.alias!r} of {name} is not set"
                raise NotFound(
                    m.last_error, code="serving.alias_not_found", hint=f"set it with the registry (steward registry promote {name} ...)"
                )
            swapped = await self.slots.champion_or_fallback(m, want, self._resolver)
            if swapped is not None:
                changes["champion"] = swapped
            m.last_error = m.degraded.reason if m.degraded is not None else None
            await self.rollouts.sync(m, changes)
            return {
                "champion": m.champion.version if m.champion else None,
                "challenger": m.challenger.version if m.challenger else None,
                "changes": changes,
            }

    # -- rollouts -----------------------------------------------------------------------
    async def apply_rollout(self, name: str, state: RolloutState | None, *, event: str | None = None) -> None:
        """Serve ``name`` as ``state`` says now (a finished or None state: the champion alone), counting ``event``.

        Raises:
            NotFound: the model is not served here.
        """
        m = self.served(name)
        if event is not None:
            self.metrics.rollout_events.labels(name, event).inc()
        await self.rollouts.apply(m, state if state is not None and state.active else None)

    async def tick(self, name: str) -> RolloutState | None:
        """Evaluate ``name``'s running rollout against its SLOs and apply the decision (advance, rollback, complete)."""
        return await self.rollouts.tick(name)

    async def tick_all(self) -> None:
        """Evaluate every running rollout once (called by the poll loop)."""
        await self.rollouts.tick_all()

    # -- what is served ------------------------------------------------------------------
    def variant_stats(self, name: str) -> dict[str, Any]:
        """Window statistics per variant (JSON-ready)."""
        m = self.served(name)
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

    def champion_version(self, name: str) -> str | None:
        """The version ``name``'s champion slot serves (None before it is loaded).

        Raises:
            NotFound: the model is not served here.
        """
        m = self.served(name)
        return m.champion.version if m.champion else None

    def routing(self, name: str) -> dict[str, Any] | None:
        """How ``name``'s traffic is split now (``mode`` and challenger ``weight``), None when it is not served here."""
        m = self.models.get(name)
        return None if m is None else {"mode": m.policy.mode, "weight": m.policy.weight}

    def listing(self) -> list[dict[str, Any]]:
        """Every served model: alias, loaded versions and rollout state (JSON-ready)."""
        return [
            {
                "name": name,
                "alias": m.spec.alias,
                "loaded": m.champion is not None,
                "version": m.champion.version if m.champion else None,
                "challenger_version": m.challenger.version if m.challenger else None,
                "rollout": {"mode": m.policy.mode, "weight": m.policy.weight, "state": m.rollout.state if m.rollout else None},
            }
            for name, m in self.models.items()
        ]

    def describe(self, name: str) -> dict[str, Any]:
        """Versions, aliases, schema and rollout state of one model (JSON-ready).

        Raises:
            NotFound: the model is not served here.
        """
        m = self.served(name)
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
