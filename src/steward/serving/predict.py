"""The request path of the model server: validate, route, batch, predict, log; explain; A/B outcomes.

:class:`PredictPath` is the part of :class:`~steward.serving.server.ModelServer` that every
request runs through. It is a base class rather than a collaborator so the hot path keeps its
shape: no extra call or allocation per request (see ``benchmarks/serve_vs_mlflow.py``). Each
request is routed with the pure router, batched, logged (failed model calls too, as
``status = "error"``) and, for shadow rollouts, copied to the shadow queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from steward.errors import BackendUnavailable, LimitExceeded, NotFound, StewardError, ValidationFailed
from steward.features import get_online_features
from steward.modeling.tasks import TASKS, BinaryClassification, Task
from steward.observability.metrics import ServingMetrics
from steward.serving.batching import BatcherClosed
from steward.serving.input_policy import InputPolicy, contract_ranges, out_of_policy_counter
from steward.serving.predlog import PredictionLogger, PredictionRecord
from steward.serving.router import Route, route
from steward.serving.runtime import field_errors, validation_error
from steward.serving.slots import ServedModel, VariantSlot
from steward.spec import ServingSpec

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["ModelFailed", "OnlineFeatures", "PredictPath", "PredictResult", "entity_errors"]

logger = logging.getLogger(__name__)

OnlineFeatures = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]

_ASSIGNMENTS_MAX = 100_000
# how often a request that met a retired batcher (a swap during its online lookup) is routed again
_SWAP_RETRIES = 3


class ModelFailed(StewardError):
    """The model raised while predicting."""

    default_code = "serving.model_failed"
    http_status = 500


@dataclass
class PredictResult:
    """The answer to one predict request."""

    request_id: str
    model: str
    version: str
    variant: str
    # binary: P(positive) per row; regression: {"value": v}; multiclass: {"label": c, "probabilities": {c: p}}
    predictions: list[Any]
    latency_ms: float
    # values served outside the input policy (mode warn): for a Warning header, not the body
    warnings: list[str] = field(default_factory=list)

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


class PredictPath:
    """Predict, explain and count outcomes over the server's loaded models (state set by the server's constructor)."""

    ws: Workspace | None
    serving: ServingSpec
    metrics: ServingMetrics
    models: dict[str, ServedModel]
    _online: OnlineFeatures | None
    _predlog: PredictionLogger | None
    _rng: random.Random
    _metric_children: dict[tuple[str, str, str], tuple[Any, Any, Any, Any]]

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

    def served(self, name: str) -> ServedModel:
        """The served model ``name``.

        Raises:
            NotFound: it is not served here.
        """
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

    async def fill_online(self, m: ServedModel, slot: VariantSlot, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Complete entity-key-only rows with the online feature store's values (values the caller sent win)."""
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
                return list(get_online_features(ws, rs))

        # the feature store needs the entity keys and the request-time columns the caller sent
        subset = [dict(rows[i]) for i in need]
        try:
            filled = await asyncio.to_thread(fetch, subset)
        except ValidationFailed as exc:
            raise validation_error(entity_errors(exc, rows, need)) from exc
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

    async def predict(
        self, name: str, rows: list[Any], *, key: str | None = None, request_id: str | None = None, version: str | None = None
    ) -> PredictResult:
        """Validate, route, batch, predict, log.

        Args:
            name: The served model.
            rows: Feature → value mappings.
            key: Sticky routing key.
            request_id: Logged with each prediction (default: a fresh one).
            version: Serve exactly this loaded version (champion or challenger) instead of routing by the rollout.

        Raises:
            NotFound: the model is not served, or ``version`` is not loaded.
            BackendUnavailable: the model is not loaded yet (503).
            ValidationFailed: rows do not match the model's schema (422, every bad field named).
            LimitExceeded: more rows than ``serving.max_rows``.
        """
        m = self.served(name)
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
        if version is not None and slot.version != version:
            r, slot, label = _pinned(m, version)
        raw = rows
        if m.spec.entity_keys:
            rows = await self.fill_online(m, slot, rows)
        errors = field_errors(slot.runtime.schema, rows)
        if errors:
            raise validation_error(errors)
        warnings = self.check_input_policy(m, slot, rows)
        x = slot.runtime.to_input(rows)  # type: ignore[attr-defined]
        try:
            scores = await slot.batcher.submit(x)
        except BatcherClosed:
            if version is not None:  # the pinned version was swapped out under this request
                raise _not_loaded(m, version) from None
            slot, label, rows, scores = await self._resubmit(m, r, raw, rid, t0)
        except Exception as exc:
            raise self._model_failed(m, slot, label, rid, rows, t0, exc) from exc
        version = slot.version
        latency = (time.perf_counter() - t0) * 1000.0
        task, classes = _task_of(slot.runtime)
        preds = task.response_rows(scores, classes)
        # the window tracks one number per row: P(positive), the value, or the predicted class's index
        summary = task.profile_output(scores).tolist()
        slot.window.record(latency, False, sum(summary) / len(summary) if summary else math.nan)
        met = self.metrics
        ok, duration, nrows, positive = self._children(name, version, label)
        ok.inc()
        duration.observe(latency / 1000.0)
        nrows.inc(len(preds))
        positives = task.positives(scores)
        if positives:
            positive.inc(positives)
        self.log_predictions(m, slot, label, rid, rows, scores, latency)
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
        return PredictResult(rid, name, version, label, preds, latency, warnings)

    def check_input_policy(self, m: ServedModel, slot: VariantSlot, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Apply the model's input policy to type-checked rows; the warnings to send back.

        Raises:
            ValidationFailed: a ``reject`` feature got an unseen category or an out-of-range value (422).
        """
        cache: dict[tuple[str, str, int], InputPolicy] = self.__dict__.setdefault("_input_policies", {})
        key = (m.name, slot.version, id(slot.runtime.schema))
        policy = cache.get(key)
        if policy is None:
            if "_contract_ranges" not in self.__dict__:
                self.__dict__["_contract_ranges"] = contract_ranges(self.ws)
            policy = cache[key] = InputPolicy.build(m.spec.input_policy, slot.runtime.schema, self.__dict__["_contract_ranges"])
        findings = policy.check(rows)
        if not findings:
            return []
        rejected = [f for f in findings if f.mode == "reject"]
        if rejected:
            raise validation_error(
                [
                    {"row": f.row, "field": f"rows.{f.row}.{f.feature}", "message": f.message, "type": f"value_error.{f.kind}"}
                    for f in rejected
                ]
            )
        counter = out_of_policy_counter(self.metrics.registry)
        for f in findings:
            counter.labels(m.name, f.feature, f.kind).inc()
        return [f.message for f in findings]

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
            rows = await self.fill_online(m, slot, raw) if m.spec.entity_keys else raw
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
        self.log_predictions(m, slot, label, rid, rows, None, latency, error=failed.code)
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

    def log_predictions(
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
        task, classes = _task_of(slot.runtime)
        values = None if scores is None else task.log_values(scores, classes)
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
                    None if values is None else values[i][0],
                    per_row,
                    shadow,
                    status,
                    error,
                    None if values is None else values[i][1],
                    None if values is None else values[i][2],
                )
            )

    async def explain(self, name: str, row: Any) -> dict[str, Any]:
        """Local attributions of the champion for one row (validated like a prediction)."""
        m = self.served(name)
        slot = m.champion
        if slot is None:
            raise BackendUnavailable(f"model {name} is not loaded yet", code="serving.not_loaded")
        rows = await self.fill_online(m, slot, [row]) if m.spec.entity_keys else [row]
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
        m = self.served(name)
        variant = m.assignments.get(request_id)
        if variant is None:
            raise NotFound(f"request {request_id} is not a known A/B request of {name}", code="serving.unknown_request")
        self.metrics.ab_outcomes.labels(name, variant, outcome).inc()
        return variant


# the label a pinned request is logged and counted under, per rollout mode: (champion's, challenger's)
_PINNED_LABELS = {"ab": ("A", "B"), "bluegreen": ("blue", "green")}


def _task_of(runtime: Any) -> tuple[Task, list[Any]]:
    # a runtime that knows no task (an external one) serves as binary did before tasks existed
    task = getattr(runtime, "task", None)
    if not isinstance(task, Task):
        return TASKS[BinaryClassification.name], []
    return task, list(getattr(runtime, "classes", None) or [])


def _pinned(m: ServedModel, version: str) -> tuple[Route, VariantSlot, str]:
    """The route, slot and label of a request that names a loaded version (never shadowed).

    Raises:
        NotFound: neither the champion nor the challenger is that version.
    """
    champion_label, challenger_label = _PINNED_LABELS.get(m.policy.mode, ("champion", "challenger"))
    if m.champion is not None and m.champion.version == version:
        return Route("champion", variant_label=champion_label), m.champion, champion_label
    if m.challenger is not None and m.challenger.version == version:
        return Route("challenger", variant_label=challenger_label), m.challenger, challenger_label
    raise _not_loaded(m, version)


def entity_errors(exc: ValidationFailed, rows: Sequence[Any], need: Sequence[int]) -> list[dict[str, Any]]:
    """The feature store's complaints about entity-key rows as ``{row, field, message, type}`` objects.

    The store reports one problem per column (``"dep_time: missing"``), as text or already structured; the API
    answers per row like the full-row path, so a client fixes the right rows. A missing column is reported on
    the rows that lack it, a badly typed one on the rows that send it.
    """
    out: list[dict[str, Any]] = []
    for e in exc.details.get("errors") or [exc.message]:
        if isinstance(e, Mapping) and isinstance(e.get("field"), str) and isinstance(e.get("row"), int):
            out.append(dict(e))
            continue
        text = str(e.get("message", e) if isinstance(e, Mapping) else e)
        col, sep, message = text.partition(": ")
        if isinstance(e, Mapping) and isinstance(e.get("field"), str):
            col, message = str(e["field"]), text
        elif not sep or not col or " " in col:
            col, message = "", text
        missing = message == "missing" or message.startswith("missing")
        kind = "missing" if missing else "value_error.online_features"
        hit = [i for i in need if isinstance(rows[i], Mapping) and ((col not in rows[i]) if missing else (col in rows[i]))] if col else []
        for i in hit or list(need[:1]):
            out.append({"row": i, "field": f"rows.{i}.{col}" if col else f"rows.{i}", "message": message if col else text, "type": kind})
    return out


def _not_loaded(m: ServedModel, version: str) -> NotFound:
    loaded = [s.version for s in (m.champion, m.challenger) if s is not None]
    return NotFound(
        f"version {version} of model {m.name} is not loaded",
        code="serving.version_not_loaded",
        hint=f"loaded: {', '.join(loaded) or 'none'}",
    )
