"""The promotion gate: the challenger must be non-inferior to the champion, everywhere.

Both models are scored here, on the same rows (the challenger's validation set,
stored with its run) and on the same machine, back to back, so the comparison
does not depend on when or where each model was trained. Checks:

* ``metric.<name>``: the main metric, within ``gate.margin`` of the champion;
* ``slice.<column>=<group>``: every group of every named slice with at least
  ``gate.min_slice_size`` rows, within ``gate.slice_margin``;
* ``fairness.<column>``: the largest gap between groups may grow by at most
  ``gate.fairness_margin``, and may not exceed ``fairness.max_gap`` unless the
  champion's gap already did (then it may not grow at all);
* ``latency.p99_ms``: p99 latency of a ``gate.batch_size`` batch at most
  ``latency_margin`` × the champion's (+ ``latency_slack_ms`` for timer noise),
  and under ``latency_p99_ms``.

A first model (no champion) is held to absolute thresholds instead:
``min_metric``, ``min_slice_metric`` (default ``min_metric - slice_margin``),
``fairness.max_gap`` and ``latency_p99_ms``.

The verdict (every check, every number) goes to the metadata store
(``gate_verdicts``), to the challenger's MLflow run (tags and
``gate/verdict-ID.json``) and into its model card.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from steward._primitives import resolve_actor, utcnow
from steward.errors import Conflict, GateFailed, NotFound
from steward.governance.audit import file_ref
from steward.modeling import (
    HIGHER_IS_BETTER,
    Task,
    encode,
    fairness_report,
    is_non_inferior,
    model_classes,
    model_encoding,
    model_task,
    score_frame,
    slice_metrics,
)
from steward.registry.cards import card_paths, log_card, write_card
from steward.registry.loader import load_verified_model
from steward.registry.versions import CHALLENGER, CHAMPION, get_alias_version, get_model_version

if TYPE_CHECKING:
    from steward.spec import ModelSpec
    from steward.workspace import Workspace

__all__ = ["VALIDATION_ARTIFACT", "GateCheck", "GateVerdict", "gate_history", "measure_latency", "run_gate"]

logger = logging.getLogger(__name__)

VALIDATION_ARTIFACT = "validation/validation.parquet"
"""Where training stores a version's validation rows with its run: the rows the gate scores both models on."""


@dataclass
class GateCheck:
    """One check: its numbers and whether it passed."""

    name: str
    passed: bool
    challenger: float | None
    champion: float | None
    threshold: float | None
    detail: str = ""


@dataclass
class GateVerdict:
    """The gate's full verdict on a challenger."""

    verdict_id: str
    model_name: str
    challenger_version: int
    champion_version: int | None
    passed: bool
    checks: list[GateCheck]
    run_id: str
    actor: str
    created_at: str
    rows: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def failed_checks(self) -> list[GateCheck]:
        """The checks that failed."""
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def raise_for_failure(self) -> None:
        """Raise :class:`GateFailed` (naming the failed checks) unless the verdict passed."""
        if self.passed:
            return
        names = [c.name for c in self.failed_checks]
        shown = ", ".join(names[:6]) + (f" (+{len(names) - 6} more)" if len(names) > 6 else "")
        raise GateFailed(
            f"{self.model_name} v{self.challenger_version} failed the gate: {shown}",
            hint="see the verdict in the model card or 'steward gate' output; retrain or adjust model.gate",
            details={"verdict": self.to_dict()},
        )


def measure_latency(models: list[tuple[Any, Any]], batch: pl.DataFrame, repeats: int) -> list[float]:
    """p99 latency (ms) of scoring ``batch`` (raw rows) once per model, interleaved to share noise."""
    prepared = [(m, model_task(info), encode(batch, model_encoding(info))) for m, info in models]
    for m, task, x in prepared:  # warm-up: first calls pay one-off costs
        task.predict(m, x)
    times: list[list[float]] = [[] for _ in prepared]
    for _ in range(max(repeats, 1)):
        for i, (m, task, x) in enumerate(prepared):
            t0 = time.perf_counter()
            task.predict(m, x)
            times[i].append((time.perf_counter() - t0) * 1000)
    return [float(np.percentile(t, 99)) for t in times]


def _fmt_threshold(metric: str, reference: float, margin: float) -> float:
    return reference - margin if HIGHER_IS_BETTER[metric] else reference + margin


def _metric_check(name: str, metric: str, c: float | None, h: float | None, margin: float, absolute: float | None) -> GateCheck:
    if c is None:
        return GateCheck(name, False, None, h, None, f"{metric} is undefined for the challenger")
    if h is not None:
        thr = _fmt_threshold(metric, h, margin)
        ok = is_non_inferior(metric, c, h, margin)
        return GateCheck(name, ok, c, h, thr, f"non-inferiority margin {margin}")
    if absolute is None:
        return GateCheck(name, True, c, None, None, "no champion and no absolute threshold")
    ok = is_non_inferior(metric, c, absolute, 0.0)
    return GateCheck(name, ok, c, None, absolute, "absolute threshold (no champion)")


def _checks(
    ms: ModelSpec,
    task: Task,
    classes: list[Any],
    frame: pl.DataFrame,
    y: np.ndarray,
    p_c: np.ndarray,
    p_h: np.ndarray | None,
    lat_c: float,
    lat_h: float | None,
) -> list[GateCheck]:
    g = ms.gate
    metric = ms.metric
    checks: list[GateCheck] = []

    def score(y_: np.ndarray, p_: np.ndarray) -> dict[str, float | None]:
        return task.scores(y_, p_, classes)

    def slices(p: np.ndarray, cols: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        return slice_metrics(frame, y, p, cols, score=score, counts=task.counts)

    mc = score(y, p_c)[metric]
    mh = score(y, p_h)[metric] if p_h is not None else None
    # a first model with no threshold in the spec meets the task's own (e.g. R² above 0), when it has one
    min_metric = g.min_metric if g.min_metric is not None else task.first_model_threshold(metric, classes)
    checks.append(_metric_check(f"metric.{metric}", metric, mc, mh, g.margin, min_metric))

    slice_cols = [c for c in ms.slices if c in frame.columns]
    sc = slices(p_c, slice_cols)
    sh = slices(p_h, slice_cols) if p_h is not None else None
    slice_abs = g.min_slice_metric
    if slice_abs is None and g.min_metric is not None:
        slice_abs = _fmt_threshold(metric, g.min_metric, g.slice_margin)
    for col in slice_cols:
        for group, entry in sc[col].items():
            if entry["n"] < g.min_slice_size:
                continue
            c_val = entry.get(metric)
            h_val = sh[col][group].get(metric) if sh is not None else None
            if c_val is None or (sh is not None and h_val is None):
                continue  # undefined on this group (a single class): nothing to compare
            chk = _metric_check(f"slice.{col}={group}", metric, c_val, h_val, g.slice_margin, slice_abs)
            chk.detail += f"; n={entry['n']}"
            checks.append(chk)

    if ms.fairness is not None and ms.fairness.column in frame.columns:
        f = ms.fairness
        groups_c = sc.get(f.column) or slices(p_c, [f.column])[f.column]
        gap_c = fairness_report(groups_c, column=f.column, metric=f.metric, min_group_size=f.min_group_size, max_gap=f.max_gap)["gap"]
        gap_h = None
        if p_h is not None:
            groups_h = (sh or {}).get(f.column) or slices(p_h, [f.column])[f.column]
            gap_h = fairness_report(groups_h, column=f.column, metric=f.metric, min_group_size=f.min_group_size, max_gap=f.max_gap)["gap"]
        name = f"fairness.{f.column}.{f.metric}_gap"
        if gap_c is None:
            checks.append(GateCheck(name, True, None, gap_h, f.max_gap, "fewer than two groups large enough to compare"))
        elif gap_h is None:
            checks.append(GateCheck(name, gap_c <= f.max_gap, gap_c, None, f.max_gap, "absolute max_gap"))
        else:
            thr = min(gap_h + g.fairness_margin, max(f.max_gap, gap_h))
            checks.append(GateCheck(name, gap_c <= thr, gap_c, gap_h, thr, f"margin {g.fairness_margin}, max_gap {f.max_gap}"))

    if lat_h is not None:
        thr = lat_h * g.latency_margin + g.latency_slack_ms
        if g.latency_p99_ms is not None:
            thr = min(thr, g.latency_p99_ms)
        detail = f"batch {g.batch_size}, {g.latency_repeats} repeats; {g.latency_margin}x champion + {g.latency_slack_ms} ms"
        checks.append(GateCheck("latency.p99_ms", lat_c <= thr, lat_c, lat_h, thr, detail))
    elif g.latency_p99_ms is not None:
        checks.append(
            GateCheck("latency.p99_ms", lat_c <= g.latency_p99_ms, lat_c, None, g.latency_p99_ms, f"batch {g.batch_size}; absolute")
        )
    return checks


def _validation_frame(ws: Workspace, run_id: str) -> pl.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = ws.tracker.download_artifact(run_id, VALIDATION_ARTIFACT, Path(tmp))
        except NotFound:
            raise NotFound(
                f"run {run_id} has no stored validation set", hint="only versions trained by 'steward train' can be gated"
            ) from None
        return pl.read_parquet(path)


def run_gate(ws: Workspace, name: str | None = None, *, version: int | None = None, actor: str | None = None) -> GateVerdict:
    """Gate a challenger (default: the ``challenger`` alias) against the ``champion``.

    Returns the verdict (also recorded); call :meth:`GateVerdict.raise_for_failure`
    to block on failure (the CLI does).

    Raises:
        NotFound: no challenger.
        Conflict: the challenger is the champion.
    """
    ms = ws.spec.model
    name = name or ms.name
    if version is None:
        version = get_alias_version(ws, name, CHALLENGER)
        if version is None:
            raise NotFound(f"model {name} has no challenger", hint="run 'steward train' first, or pass --version")
    champion = get_alias_version(ws, name, CHAMPION)
    if champion == version:
        raise Conflict(f"{name} v{version} already is the champion", code="registry.already_champion")
    mv = get_model_version(ws, name, version)
    run_id = str(mv.run_id)
    frame = _validation_frame(ws, run_id)
    model_c, info_c = load_verified_model(ws, name, version)
    label = info_c.metadata["steward"]["label"]
    task, classes = model_task(info_c), model_classes(info_c)
    y = task.label_array(frame, label, classes)
    p_c = score_frame(model_c, info_c, frame)
    p_h = None
    models = [(model_c, info_c)]
    if champion is not None:
        model_h, info_h = load_verified_model(ws, name, champion)
        p_h = score_frame(model_h, info_h, frame)
        models.append((model_h, info_h))
    batch = frame.head(ms.gate.batch_size)
    if batch.height < ms.gate.batch_size:
        # a small validation set: tile it so the batch has the size the spec asks for
        batch = pl.concat([batch] * (ms.gate.batch_size // max(batch.height, 1) + 1)).head(ms.gate.batch_size)
    lat = measure_latency(models, batch, ms.gate.latency_repeats)
    checks = _checks(ms, task, classes, frame, y, p_c, p_h, lat[0], lat[1] if champion is not None else None)
    verdict = GateVerdict(
        verdict_id=uuid.uuid4().hex,
        model_name=name,
        challenger_version=version,
        champion_version=champion,
        passed=all(c.passed for c in checks),
        checks=checks,
        run_id=run_id,
        actor=resolve_actor(actor),
        created_at=utcnow(),
        rows=int(frame.height),
    )
    _record(ws, verdict)
    return verdict


def _record(ws: Workspace, verdict: GateVerdict) -> None:
    body = verdict.to_dict()
    ws.metadata.execute(
        "INSERT INTO gate_verdicts (verdict_id, model_name, challenger_version, champion_version, run_id, passed, checks, actor, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            verdict.verdict_id,
            verdict.model_name,
            verdict.challenger_version,
            verdict.champion_version,
            verdict.run_id,
            int(verdict.passed),
            json.dumps(body["checks"]),
            verdict.actor,
            verdict.created_at,
        ),
    )
    # the card gets the verdict before the audit entry is written, so the entry links to the exact card
    card = _write_card_verdict(ws, verdict, body)
    outputs: dict[str, Any] = {"verdict": body}
    if card is not None:
        outputs["card"] = file_ref(card[0], ws.spec.base_dir)
        outputs["card_json"] = file_ref(card[1], ws.spec.base_dir)
    ws.audit.append(
        "registry.gate",
        f"model:{verdict.model_name}@{verdict.challenger_version}",
        actor=verdict.actor,
        model=verdict.model_name,
        outputs=outputs,
        details={
            "passed": verdict.passed,
            "champion_version": verdict.champion_version,
            "failed_checks": [c.name for c in verdict.failed_checks],
            "verdict_id": verdict.verdict_id,
        },
    )
    failed = ",".join(c.name for c in verdict.failed_checks)
    tags = {
        "steward.gate.passed": str(verdict.passed).lower(),
        "steward.gate.verdict_id": verdict.verdict_id,
        "steward.gate.champion_version": str(verdict.champion_version or "none"),
        "steward.gate.failed_checks": failed[:5000] or "none",
        "steward.gate.at": verdict.created_at,
    }
    ws.tracker.set_tags(verdict.run_id, tags)
    ws.tracker.log_dict(verdict.run_id, body, f"gate/verdict-{verdict.verdict_id}.json")
    ws.model_registry.set_version_tag(
        verdict.model_name, verdict.challenger_version, "steward.gate", "passed" if verdict.passed else "failed"
    )
    if card is not None:
        log_card(ws, verdict.run_id, verdict.model_name, verdict.challenger_version)


def _write_card_verdict(ws: Workspace, verdict: GateVerdict, body: dict[str, Any]) -> tuple[Path, Path] | None:
    """Add the verdict to the challenger's card; return its ``(markdown, json)`` paths, or None without a card."""
    _, js = card_paths(ws, verdict.model_name, verdict.challenger_version)
    if not js.exists():
        logger.warning("no card for %s v%s; gate verdict not added to a card", verdict.model_name, verdict.challenger_version)
        return None
    card = json.loads(Path(js).read_text(encoding="utf-8"))
    card["gate"] = {k: body[k] for k in ("verdict_id", "passed", "champion_version", "created_at", "actor", "checks")}
    return write_card(ws, card), js


def gate_history(ws: Workspace, name: str, version: int | None = None) -> list[dict[str, Any]]:
    """Recorded verdicts of a model (optionally one version), newest first, checks decoded."""
    sql = "SELECT * FROM gate_verdicts WHERE model_name = ?"
    params: tuple[Any, ...] = (name,)
    if version is not None:
        sql += " AND challenger_version = ?"
        params = (name, version)
    rows = ws.metadata.fetchall(sql + " ORDER BY created_at DESC", params)
    out = []
    for r in rows:
        d = dict(r)
        d["passed"] = bool(int(d["passed"]))
        d["checks"] = json.loads(d["checks"])
        out.append(d)
    return out
