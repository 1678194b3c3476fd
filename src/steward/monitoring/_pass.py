"""The monitoring pass: one model's latest window of the prediction log judged against every policy.

:func:`evaluate_policies` is the one hook the self-healing loop needs: it profiles the
latest window of the prediction log, compares it with the model version's reference
profile, joins delayed labels for quality, evaluates SLO burn rates, turns every policy
into checks (each statistic with its threshold, :mod:`._rules`) and returns the actions to
take as data. It records the verdict, its checks and its actions in the metadata store
(:mod:`._verdicts`), updates the Prometheus gauges, and sends ``alert`` notifications (log +
webhook, :mod:`._alerts`). Executing ``retrain``, ``rollback`` or ``shadow-then-promote`` is
the loop's job.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from steward._primitives import iso_utc, parse_duration
from steward.errors import NotFound, TableNotFound
from steward.monitoring._alerts import notify_actions, publish_gauges
from steward.monitoring._drift import DriftOptions
from steward.monitoring._performance import LABEL, classification_metrics, join_labels, load_labels
from steward.monitoring._profile import ColumnProfile, ReferenceProfile, profile_for_model
from steward.monitoring._rules import effective_policies, evaluate, worst_status
from steward.monitoring._slo import SloStatus, evaluate_slo, quality_events, sli_events, slo_kind
from steward.monitoring._verdicts import MonitorVerdict, record_verdict
from steward.monitoring._windows import WindowProfiler, decode_features, iter_batches, read_log
from steward.spec import MonitoringSpec

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from steward.workspace import Workspace

__all__ = ["MonitorWindow", "evaluate_policies", "logged_models"]

logger = logging.getLogger(__name__)

# the code of "nothing logged for this model yet": a normal state for a fresh server, not a failure
NO_PREDICTIONS = "monitoring.no_predictions"


@dataclass(frozen=True)
class MonitorWindow:
    """Which rows of the prediction log to judge: ``[start, end)`` by time, or the ``last_rows`` newest rows."""

    start: datetime | None = None
    end: datetime | None = None
    last_rows: int | None = None

    @classmethod
    def latest(cls, mspec: MonitoringSpec, now: datetime | None = None) -> MonitorWindow:
        """The most recent window as the spec defines it."""
        now = now or datetime.now(UTC)
        if mspec.window.by == "count":
            return cls(end=now, last_rows=int(mspec.window.size))
        return cls(start=now - parse_duration(mspec.window.size), end=now)


def _log_frame(ws: Workspace, mspec: MonitoringSpec, model: str, version: str | None, window: MonitorWindow) -> pl.LazyFrame:
    lf = read_log(ws, table=mspec.table, model=model, version=version, start=window.start, end=window.end)
    if window.last_rows is not None:
        lf = lf.sort("ts").tail(window.last_rows)
    return lf


def _pick_version(ws: Workspace, mspec: MonitoringSpec, model: str, window: MonitorWindow) -> str | None:
    lf = _log_frame(ws, mspec, model, None, window)
    if "version" not in lf.collect_schema().names():
        return None
    last = lf.sort("ts").select(pl.col("version").cast(pl.Utf8)).tail(1).collect()
    return str(last.item()) if last.height else None


def _distributions(reference: ReferenceProfile, window: ReferenceProfile) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pairs = [(n, reference.columns[n], window.columns.get(n)) for n in reference.feature_names]
    if reference.prediction is not None:
        pairs.append(("prediction", reference.prediction, window.prediction))
    for name, ref, cur in pairs:
        if cur is None:
            continue
        if ref.kind == "numeric":
            out[name] = {"kind": "numeric", "cuts": [float(x) for x in ref.cuts], "reference": [int(x) for x in ref.counts], "window": [int(x) for x in cur.counts],
                         "min": ref.min, "max": ref.max}  # fmt: skip
        else:
            keys = sorted(set(ref.categories) | set(cur.categories), key=lambda k: -(ref.categories.get(k, 0) + cur.categories.get(k, 0)))[
                :25
            ]
            out[name] = {"kind": "categorical", "categories": keys, "reference": [ref.categories.get(k, 0) for k in keys],
                         "window": [cur.categories.get(k, 0) for k in keys]}  # fmt: skip
    return out


def evaluate_policies(
    ws: Workspace,
    model: str,
    window: MonitorWindow | None = None,
    *,
    version: str | None = None,
    reference: ReferenceProfile | None = None,
    now: datetime | None = None,
    record: bool = True,
    notify: bool = True,
    registry: CollectorRegistry | None = None,
) -> MonitorVerdict:
    """One monitoring pass over ``model``: profile the window, evaluate every policy, return the verdict.

    Args:
        ws: The workspace (spec, lake, metadata).
        model: Model name as logged in the prediction log.
        window: Rows to judge (default: the latest window of ``monitoring.window``).
        version: Model version (default: the version of the newest logged row in the window).
        reference: The reference profile (default: :func:`profile_for_model`).
        now: The evaluation time (default: the current time).
        record: Write the verdict, checks and actions to the metadata store.
        notify: Send ``alert`` actions to the log and the webhook, and update the gauges.

    Returns:
        The verdict; ``verdict.actions`` lists what the loop should do.

    Raises:
        NotFound: no reference profile for the model version.
    """
    mspec = ws.spec.monitoring
    now = now or datetime.now(UTC)
    window = window or MonitorWindow.latest(mspec, now)
    version = version or _pick_version(ws, mspec, model, window)
    if reference is None:
        if version is None:
            raise NotFound(
                f"no logged predictions for model {model} in the window",
                code=NO_PREDICTIONS,
                hint="serve some traffic first, or widen monitoring.window",
            )
        reference = profile_for_model(ws, model, version)
    options = DriftOptions(psi_binning=mspec.psi_binning, wasserstein_norm=mspec.wasserstein_norm)
    policies = effective_policies(mspec)

    # 1. the window's profile, built chunk by chunk (bounded memory)
    profiler = WindowProfiler(reference, sample_size=mspec.reference_sample)
    slo_specs = list(mspec.slos)
    start_seen: datetime | None = None
    for chunk in iter_batches(_log_frame(ws, mspec, model, version, window)):
        profiler.update(chunk)
        if chunk.height and start_seen is None:
            start_seen = chunk.get_column("ts").min()  # type: ignore[assignment]
    window_profile = profiler.profile()

    # 2. quality on labelled rows (labels arrive late: judge the window shifted back by the label delay)
    performance: dict[str, dict[str, float | None]] = {}
    target_profile: ColumnProfile | None = None
    label_counts: dict[str, int] = {}
    if mspec.labels is not None:
        performance, target_profile, label_counts = _performance(ws, mspec, model, version, window, now, reference)
    if target_profile is not None:
        window_profile.target = target_profile

    # 3. SLOs over their own periods (burn windows reach back up to 6h, the budget over the period)
    slo_results: list[tuple[SloStatus, Any]] = []
    if slo_specs:
        slo_results = _slo_statuses(ws, mspec, model, now)

    checks, actions = evaluate(
        policies, reference, window_profile, model=model, version=version, performance=performance, slos=slo_results, options=options
    )
    verdict = MonitorVerdict(
        verdict_id=uuid.uuid4().hex,
        model=model,
        version=version,
        window_start=window.start or start_seen,
        window_end=window.end,
        n_rows=window_profile.n_rows,
        actions=actions,
        checks=checks,
        status=worst_status(checks),
        created_at=iso_utc(now),
        details={
            "distributions": _distributions(reference, window_profile),
            "performance": performance,
            "labels": label_counts,
            "slos": [s.to_dict() for s, _ in slo_results],
            "options": asdict(options),
        },
    )
    if notify:
        publish_gauges(verdict, policies, registry)
        notify_actions(ws, verdict)
    if record:
        record_verdict(ws, verdict)
    return verdict


def _labelled(
    ws: Workspace, mspec: MonitoringSpec, model: str, version: str | None, window: MonitorWindow
) -> tuple[pl.DataFrame, int] | None:
    """The window's predictions joined with their labels, and how many label rows were collected (None: no labels)."""
    assert mspec.labels is not None
    keys = list(mspec.labels.join) or ["request_id"]
    lf = _log_frame(ws, mspec, model, version, window)
    names = lf.collect_schema().names()
    # only what the join, the metrics and the slices read (label columns too: join_labels lets the log's win)
    wanted = dict.fromkeys(["ts", "prediction", "features", *keys, *mspec.slices, LABEL, "label_ts"])
    preds = lf.select([c for c in wanted if c in names]).collect()
    if preds.height == 0:
        return None
    try:
        labels = load_labels(ws, mspec.labels, keys=keys, predictions=preds)
    except NotFound:
        logger.info("no labels yet in %s", mspec.labels.source)
        return None
    except TableNotFound:
        logger.info("label table %s does not exist yet", mspec.labels.source)
        return None
    asof = (mspec.labels.direction, mspec.labels.tolerance) if mspec.labels.match == "asof" else None
    return join_labels(preds, labels, on=keys, asof=asof), labels.height


def _performance(
    ws: Workspace, mspec: MonitoringSpec, model: str, version: str | None, window: MonitorWindow, now: datetime, reference: ReferenceProfile
) -> tuple[dict[str, dict[str, float | None]], ColumnProfile | None, dict[str, int]]:
    assert mspec.labels is not None
    delay = parse_duration(mspec.labels.delay)
    shifted = MonitorWindow(
        start=window.start - delay if window.start else None, end=(window.end or now) - delay, last_rows=window.last_rows
    )  # fmt: skip
    got = _labelled(ws, mspec, model, version, shifted)
    if got is None:
        return {}, None, {}
    joined, n_labels = got
    counts = {"labels_loaded": n_labels, "labelled_rows": joined.height}
    if joined.height == 0:
        return {}, None, counts
    y = joined.get_column(LABEL).to_numpy()
    p = joined.get_column("prediction").to_numpy()
    out: dict[str, dict[str, float | None]] = {"all": classification_metrics(y, p)}
    slices = decode_features(joined, list(mspec.slices))
    for col in mspec.slices:
        if col not in slices.columns:
            continue
        for (val,), part in slices.partition_by(col, as_dict=True, maintain_order=True).items():
            out[f"{col}={val}"] = classification_metrics(part.get_column(LABEL).to_numpy(), part.get_column("prediction").to_numpy())
    target = None
    if reference.target is not None:
        prof = WindowProfiler(reference, target_col=LABEL, sample_size=mspec.reference_sample)
        prof.update(joined.select([LABEL, "prediction"]))
        target = prof.profile().target
    return out, target, counts


def _slo_statuses(ws: Workspace, mspec: MonitoringSpec, model: str, now: datetime) -> list[tuple[SloStatus, Any]]:
    out: list[tuple[SloStatus, Any]] = []
    longest = max((parse_duration(s.period) for s in mspec.slos), default=parse_duration("30d"))
    frame: pl.DataFrame | None = None
    labelled: dict[str, pl.DataFrame] = {}
    for slo in mspec.slos:
        if slo_kind(slo) == "quality":
            # labelled predictions are the events, judged up to the label horizon: younger ones have no label yet
            horizon = now - parse_duration(mspec.labels.delay) if mspec.labels is not None else now
            if slo.period not in labelled:
                got = None
                if mspec.labels is not None:
                    got = _labelled(ws, mspec, model, None, MonitorWindow(start=horizon - parse_duration(slo.period), end=horizon))
                labelled[slo.period] = got[0] if got is not None else pl.DataFrame()
            out.append((evaluate_slo(quality_events(labelled[slo.period], slo), slo, now=horizon), slo))
            continue
        if frame is None:
            # failed calls are availability events; shadow rows are dropped by sli_events
            lf = read_log(ws, table=mspec.table, model=model, start=now - longest, end=now, include_errors=True)
            log_cols = [c for c in ("ts", "status", "error", "latency_ms", "shadow") if c in lf.collect_schema().names()]
            frame = lf.select(log_cols).collect()
        out.append((evaluate_slo(sli_events(frame, slo), slo, now=now), slo))
    return out


def logged_models(ws: Workspace) -> list[str]:
    """Model names present in the prediction log (empty when there is no log yet)."""
    try:
        lf = ws.lake.scan(ws.spec.monitoring.table)
    except TableNotFound:
        return []
    return sorted(str(m) for m in lf.select(pl.col("model").unique()).collect().get_column("model").to_list() if m is not None)
