"""Helpers for the loop tests: a small project, a lake-backed training-set builder, a champion, drift, a stats driver."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))

from _train_synth import FEATURES, make_frame, model_section

from steward.data.lake import TableRef
from steward.errors import ValidationFailed
from steward.features.training_set import TrainingSet
from steward.serving.rollout import RolloutController, RolloutState, rules_from_spec
from steward.serving.router import StepDecision, VariantStats, evaluate_step
from steward.workspace import Workspace, open_workspace

TABLE = "silver.synth"
CUT = "2013-10-01"  # the validation split of model_section()

# wide margins everywhere except the main metric, so only the property under test decides the gate
GATE = {
    "margin": 0.02,
    "slice_margin": 0.15,
    "fairness_margin": 1.0,
    "min_metric": 0.6,
    "min_slice_metric": 0.0,
    "latency_p99_ms": 5000,
    "latency_margin": 20,
    "latency_slack_ms": 50,
    "batch_size": 200,
    "latency_repeats": 5,
}

MONITORING: dict[str, Any] = {
    "window": {"by": "count", "size": 1000},
    "reference_sample": 2000,
    "policies": [
        {
            "name": "wind_drift",
            "detector": "psi",
            "on": "features",
            "columns": ["wind_speed", "carrier"],
            "threshold": 0.2,
            "action": "retrain",
            "min_rows": 100,
        }
    ],
}

ROLLOUT: dict[str, Any] = {
    "mode": "canary",
    "steps": [50, 100],
    "step_window_s": 1,
    "slo": {"max_error_rate": 0.02, "max_p99_ms": 200, "min_requests": 20},
}


def make_loop_workspace(
    tmp: Path, name: str, tracking_uri: str, *, metadata_url: str | None = None, rollout: bool = True, drift_action: str = "retrain"
) -> Workspace:
    """A project named ``name`` with a small LightGBM model, a drift policy (asking for ``drift_action``) and a canary policy."""
    storage: dict[str, Any] = {"tracking_uri": tracking_uri}
    if metadata_url:
        storage["metadata_url"] = metadata_url
    doc: dict[str, Any] = {
        "project": name,
        "storage": storage,
        "model": model_section(name=name, fairness=None, slices=["origin"], gate=GATE),
        "monitoring": {**MONITORING, "policies": [{**MONITORING["policies"][0], "action": drift_action}]},
    }
    if rollout:
        doc["serving"] = {"models": {name: {"rollout": ROLLOUT}}}
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "steward.yaml").write_text(yaml.safe_dump(doc))
    return open_workspace(tmp)


def noisy(frame: pl.DataFrame, share: float, seed: int = 1) -> pl.DataFrame:
    """Flip the label of a random ``share`` of rows (a weaker model learns from it)."""
    flip = np.random.default_rng(seed).random(frame.height) < share
    return frame.with_columns(pl.when(pl.Series(flip)).then(~pl.col("late")).otherwise(pl.col("late")).alias("late"))


def inverted_before_cut(frame: pl.DataFrame) -> pl.DataFrame:
    """Invert every training-period label (validation rows stay true): a challenger that learns the opposite."""
    cut = datetime.fromisoformat(CUT).replace(tzinfo=UTC)
    return frame.with_columns(pl.when(pl.col("time_hour") < cut).then(~pl.col("late")).otherwise(pl.col("late")).alias("late"))


def lake_set(ws: Workspace, *, pins: dict[str, int] | None = None) -> TrainingSet:
    """The training-set builder the loop uses in tests: ``silver.synth`` at its pin, or its newest version."""
    ref = TableRef.parse(TABLE)
    ref = ref.at(pins[TABLE]) if pins and TABLE in pins else ws.lake.pin(ref)
    return TrainingSet(
        frame=ws.lake.read(ref),
        inputs=[ref],
        feature_names=list(FEATURES),
        label="late",
        event_time="time_hour",
        entity_keys=["flight_id"],
        categorical=["origin", "carrier"],
    )


class CountingBuilder:
    """``lake_set`` that counts its calls and their pins."""

    def __init__(self) -> None:
        self.calls: list[dict[str, int] | None] = []

    def __call__(self, ws: Workspace, *, pins: dict[str, int] | None = None) -> TrainingSet:
        self.calls.append(pins)
        return lake_set(ws, pins=pins)


def blocking_builder(release_file: str) -> Callable[..., TrainingSet]:
    """A builder that waits until ``release_file`` exists, then fails (the loop in another process ends aborted)."""

    def build(ws: Workspace, *, pins: dict[str, int] | None = None) -> TrainingSet:
        deadline = time.monotonic() + 60
        while not Path(release_file).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        raise ValidationFailed("released by the test")

    return build


def hold_loop(project: str, release_file: str) -> None:
    """Run a loop in this (spawned) process that sits in its first step until ``release_file`` appears."""
    from steward.loop import run_loop

    ws = open_workspace(project)
    try:
        run_loop(ws, rollout=False, builder=blocking_builder(release_file), lock_ttl_s=30)
    except ValidationFailed:
        pass  # the release: the loop ends aborted
    finally:
        ws.close()


def seed_champion(ws: Workspace, frame: pl.DataFrame) -> int:
    """Write ``frame`` to the lake, train on it, make it the champion and store its reference profile."""
    from steward.monitoring import build_reference_profile, store_profile
    from steward.registry import promote
    from steward.training import train_model

    ws.lake.write(TABLE, frame)
    res = train_model(ws, lake_set(ws))
    assert res.version is not None
    promote(ws, ws.spec.model.name, res.version, reason="seed champion", force=True)
    profile = build_reference_profile(frame, list(FEATURES), ["origin", "carrier"], bins=ws.spec.monitoring.bins)
    store_profile(ws, profile, ws.spec.model.name, res.version)
    return res.version


def log_predictions(ws: Workspace, frame: pl.DataFrame, version: int, *, wind_shift: float = 0.0) -> datetime:
    """Log ``frame``'s rows as served predictions of ``version`` (wind speeds shifted by ``wind_shift``); return the last ts."""
    start = datetime(2014, 1, 1, tzinfo=UTC)
    log = frame.select(
        pl.Series("request_id", [f"r{i}" for i in range(frame.height)]),
        pl.lit(ws.spec.model.name).alias("model"),
        pl.lit(str(version)).alias("version"),
        pl.lit("champion").alias("variant"),
        pl.Series("ts", [start + timedelta(minutes=i) for i in range(frame.height)]).dt.cast_time_unit("us"),
        "origin",
        pl.when(pl.lit(wind_shift) > 0).then(pl.lit("EV")).otherwise(pl.col("carrier")).alias("carrier"),
        "hour",
        "distance",
        (pl.col("wind_speed") + wind_shift).alias("wind_speed"),
        pl.lit(0.3).alias("prediction"),
        pl.lit(5.0).alias("latency_ms"),
    )
    ws.lake.write(ws.spec.monitoring.table, log)
    return start + timedelta(minutes=frame.height)


class StatsDriver:
    """Feeds fixed window statistics into the real step rules and controller, as a serving process would.

    Each poll treats the step's window as fully watched, so a healthy canary advances
    step by step to completion, and a breaching one is rolled back at once.
    """

    def __init__(self, challenger: VariantStats, champion: VariantStats | None = None, *, max_polls: int = 10) -> None:
        self.challenger = challenger
        self.champion = champion or VariantStats(requests=500, errors=0, p99_ms=10.0, mean_prediction=0.3)
        self.max_polls = max_polls
        self.decisions: list[StepDecision] = []

    def wait(
        self, controller: RolloutController, model: str, rollout_id: str, *, timeout_s: float, keepalive: Callable[[], None]
    ) -> RolloutState | None:
        from steward.loop import rollout_state

        for _ in range(self.max_polls):
            keepalive()
            st = rollout_state(controller, rollout_id)
            if not st.active:
                return st
            rules = rules_from_spec(st.spec)
            decision = evaluate_step(rules, st.step_index, rules.window_s, self.challenger, self.champion, progressive=st.mode == "canary")
            self.decisions.append(decision)
            if decision.action == "hold":
                return None  # not enough evidence: the loop times out
            controller.apply(st, decision, {"challenger": asdict(self.challenger), "champion": asdict(self.champion)})
        return None


HEALTHY = VariantStats(requests=400, errors=1, p99_ms=12.0, mean_prediction=0.31)
ERRORING = VariantStats(requests=400, errors=40, p99_ms=12.0, mean_prediction=0.31)


def audit_actions(ws: Workspace, loop_id: str | None = None) -> list[str]:
    """Actions of the ``loop.*`` audit entries (of one loop), oldest first."""
    import json

    rows = ws.metadata.fetchall("SELECT * FROM audit_log ORDER BY seq")
    out = []
    for r in rows:
        if not str(r["action"]).startswith("loop."):
            continue
        if loop_id is not None and loop_id not in json.dumps(r, default=str):
            continue
        out.append(str(r["action"]))
    return out


__all__ = [
    "ERRORING",
    "HEALTHY",
    "TABLE",
    "CountingBuilder",
    "StatsDriver",
    "audit_actions",
    "blocking_builder",
    "hold_loop",
    "inverted_before_cut",
    "lake_set",
    "log_predictions",
    "make_frame",
    "make_loop_workspace",
    "noisy",
    "seed_champion",
]
