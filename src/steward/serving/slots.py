"""Loaded model versions: one slot per version (runtime, micro-batcher, statistics window), loaded, swapped, retired.

A :class:`ServedModel` holds what the server keeps for one model name: its champion and
challenger slots, the rollout it applies and the routing policy. :class:`Slots` loads a
version into a slot (in a worker thread, warmed up off the event loop), swaps it in
atomically, and retires the one it replaces only after the requests already routed to it
have finished, so a swap never drops a request.

A champion that fails verification (hashes, manifest signature, or it does not load) never
leaves a model serving nothing when something else can serve: :meth:`Slots.champion_or_fallback`
keeps the champion already loaded, or at start-up loads the version ``previous`` points at (the
champion before, which was verified when it was promoted), and marks the model *degraded*
(:class:`Degraded`: ``/readyz`` says so, ``steward_model_degraded`` is 1, the audit trail has an
entry). It deliberately does not fall further back to "the newest version that verifies": that
could be a challenger that never passed the gate; with no ``previous`` the model is not ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from steward._primitives import iso_utc
from steward.errors import DataError
from steward.observability.metrics import ServingMetrics
from steward.serving.batching import MicroBatcher
from steward.serving.rollout import RolloutState
from steward.serving.router import RoutePolicy
from steward.serving.runtime import ModelRuntime
from steward.serving.stats import VariantWindow
from steward.spec import ServedModelSpec, ServingSpec

__all__ = ["FALLBACK_ALIAS", "Degraded", "Loader", "ServedModel", "ShadowCopy", "Slots", "VariantSlot"]

logger = logging.getLogger(__name__)

FALLBACK_ALIAS = "previous"
"""The alias served at start-up when the serving alias's version fails verification."""

Loader = Callable[[str, str, list[str]], ModelRuntime]
# a shadow copy: the validated rows the champion saw (raw values, not its encoding), its scores, the request id
ShadowCopy = tuple[list[Any], np.ndarray, str]
Change = dict[str, Any]
Resolver = Callable[[str, str], str | None]
OnDegraded = Callable[["ServedModel", "Degraded | None"], None]


@dataclass
class Degraded:
    """A model that serves something other than what its alias points at, because that version fails verification.

    Attributes:
        wanted: The version the serving alias points at (refused).
        serving: The version served instead (None: nothing; the model is not ready).
        reason: Why, naming the model, version and file (and why the fallback failed, if it did).
        since: When it became degraded (epoch seconds).
    """

    wanted: str
    serving: str | None
    reason: str
    since: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``/readyz`` and the audit trail)."""
        return {"wanted": self.wanted, "serving": self.serving, "reason": self.reason, "since": iso_utc(self.since)}


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
    degraded: Degraded | None = None
    sticky_key: str | None = None
    assignments: OrderedDict[str, str] = field(default_factory=OrderedDict)
    shadow_queue: asyncio.Queue[ShadowCopy] | None = None
    shadow_tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def retire(slot: VariantSlot | None) -> None:
    """Close a replaced slot's batcher once the requests already routed to it have finished (nothing is dropped)."""
    if slot is not None:
        await slot.batcher.aclose()


def retire_soon(slot: VariantSlot) -> None:
    """Retire ``slot`` in the background (the caller does not wait for its queue to drain)."""
    asyncio.get_running_loop().create_task(retire(slot))


class Slots:
    """Load versions into slots and swap them in.

    Args:
        serving: The ``serving`` section (batching options).
        metrics: The server's metrics (batch sizes, queue depths, loaded versions, reloads).
        loader: ``(name, alias_or_version, entity_keys) → ModelRuntime``.
        on_degraded: Called (in a worker thread) when a model becomes degraded, changes how, or recovers (None).
    """

    def __init__(self, serving: ServingSpec, metrics: ServingMetrics, loader: Loader, on_degraded: OnDegraded | None = None) -> None:
        self.serving = serving
        self.metrics = metrics
        self.loader = loader
        self.on_degraded = on_degraded

    def slot(self, m: ServedModel, rt: ModelRuntime, variant: str) -> VariantSlot:
        """A slot for an already loaded runtime: its batcher and statistics window."""
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

    async def load(self, m: ServedModel, ref: str, variant: str) -> VariantSlot:
        """Load ``ref`` (an alias or a version) of ``m`` in a worker thread and warm it up off the event loop."""
        rt = await asyncio.to_thread(self.loader, m.name, ref, list(m.spec.entity_keys))
        # warm up off the loop so the first real request does not pay for lazy initialisation
        if rt.feature_names:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(rt.predict, np.full((1, len(rt.feature_names)), np.nan))
        self.metrics.reloads.labels(m.name, "loaded").inc()
        return self.slot(m, rt, variant)

    def set_loaded(self, m: ServedModel, variant: str, old: VariantSlot | None, new: VariantSlot | None) -> None:
        """Move the ``loaded`` gauge from ``old`` to ``new``."""
        if old is not None:
            self.metrics.loaded.labels(m.name, old.version, variant).set(0)
        if new is not None:
            self.metrics.loaded.labels(m.name, new.version, variant).set(1)

    async def swap_champion(self, m: ServedModel, want: str) -> Change | None:
        """Make version ``want`` the champion of ``m``; None when it already is.

        A challenger already loaded at that version (it was just promoted) becomes the champion
        as it is; otherwise the version is loaded beside the old one, swapped in, and the old
        one retires once its queued requests are answered.
        """
        if m.champion is not None and m.champion.version == want:
            return None
        old = m.champion
        if m.challenger is not None and m.challenger.version == want:
            new = m.challenger  # promoted: the challenger already loaded becomes the champion
            m.challenger = None
            self.set_loaded(m, "challenger", new, None)
        else:
            new = await self.load(m, want, "champion")
        m.champion = new
        self.set_loaded(m, "champion", old, new)
        if old is not None and old is not m.challenger:
            retire_soon(old)
        return {"from": old.version if old else None, "to": want}

    async def champion_or_fallback(self, m: ServedModel, want: str, resolve: Resolver) -> Change | None:
        """:meth:`swap_champion` to ``want``; when ``want`` fails verification, serve a fallback and mark ``m`` degraded.

        The fallback is the champion already loaded, or (nothing loaded yet: start-up) the version
        :data:`FALLBACK_ALIAS` points at, if it verifies.

        Raises:
            DataError: ``want`` fails verification and nothing else could be served (``m.degraded`` says why).
        """
        try:
            change = await self.swap_champion(m, want)
        except DataError as exc:
            self.metrics.verification_failures.labels(m.name).inc()
            return await self._fall_back(m, want, exc, resolve)
        if m.degraded is not None:
            logger.info("%s recovered: serving v%s as its alias says", m.name, want)
            await self._mark(m, None)
        return change

    async def _fall_back(self, m: ServedModel, want: str, exc: DataError, resolve: Resolver) -> Change | None:
        reason = exc.message
        change: Change | None = None
        if m.champion is None:
            fallback = await asyncio.to_thread(resolve, m.name, FALLBACK_ALIAS)
            if fallback is None or fallback == want:
                reason += f"; no {FALLBACK_ALIAS!r} version to fall back to"
            else:
                try:
                    change = await self.swap_champion(m, fallback)
                except DataError as again:
                    self.metrics.verification_failures.labels(m.name).inc()
                    reason += f"; the {FALLBACK_ALIAS!r} version fails too: {again.message}"
        serving = m.champion.version if m.champion is not None else None
        old = m.degraded
        if old is None or (old.wanted, old.serving, old.reason) != (want, serving, reason):
            logger.warning("%s degraded: v%s refused, serving %s: %s", m.name, want, f"v{serving}" if serving else "nothing", reason)
            await self._mark(m, Degraded(want, serving, reason))
        if serving is None:
            raise type(exc)(reason, code=exc.code, hint=exc.hint, details=exc.details) from exc
        return change

    async def _mark(self, m: ServedModel, degraded: Degraded | None) -> None:
        m.degraded = degraded
        self.metrics.degraded.labels(m.name).set(0 if degraded is None else 1)
        if self.on_degraded is not None:
            try:
                await asyncio.to_thread(self.on_degraded, m, degraded)
            except Exception:  # recording must never take serving down
                logger.exception("could not record the degraded state of %s", m.name)

    async def set_challenger(self, m: ServedModel, version: str) -> Change | None:
        """Load version ``version`` as the challenger of ``m`` (None when it already is); the old one retires."""
        if m.challenger is not None and m.challenger.version == version:
            return None
        old = m.challenger
        m.challenger = await self.load(m, version, "challenger")
        self.set_loaded(m, "challenger", old, m.challenger)
        if old is not None:
            retire_soon(old)
        return {"from": old.version if old else None, "to": version}

    def drop_challenger(self, m: ServedModel) -> Change | None:
        """Stop serving the challenger of ``m`` (None when there is none); it retires in the background."""
        if m.challenger is None:
            return None
        gone, m.challenger = m.challenger, None
        self.set_loaded(m, "challenger", gone, None)
        retire_soon(gone)
        return {"from": gone.version, "to": None}

    @staticmethod
    async def close(m: ServedModel) -> None:
        """Drain and close every slot of ``m`` (server shutdown)."""
        for slot in (m.champion, m.challenger):
            if slot is not None:
                await slot.batcher.aclose(drain_timeout_s=2.0)
