"""Demo data for the dashboard tests, written through the stage libraries themselves.

One registered model (two versions, aliases, a model card) in a real MLflow
registry, a canary rollout with recorded per-variant metrics, monitoring verdicts
over six windows (drift rising through the thresholds, quality falling, actions
taken), LLM gateway usage over several days, spans in the trace store and the
hash-chained audit trail those operations wrote.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from steward.workspace import Workspace, open_workspace

MODEL = "flights_delay"
VIEWER_KEY = "viewer-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
KEYS_ENV = f"{VIEWER_KEY}:viewer,{ADMIN_KEY}:admin"
FEATURES = ("dep_hour", "origin_temp", "carrier_delay_rate")
NOW = datetime.now(UTC).replace(microsecond=0)


def new_project(root: Path, name: str = "dashdemo", *, metadata_url: str | None = None) -> Workspace:
    """An empty project (nothing trained, served or monitored); metadata in SQLite unless ``metadata_url``."""
    root.mkdir(parents=True, exist_ok=True)
    storage = f"storage:\n  metadata_url: {metadata_url}\n" if metadata_url else ""
    (root / "steward.yaml").write_text(f"project: {name}\n{storage}", encoding="utf-8")
    return open_workspace(root / "steward.yaml")


def seed_registry(ws: Workspace, template_db: Path | None = None) -> None:
    """Register two versions of MODEL (v1 champion, v2 challenger) with model cards (a real MLflow registry).

    Args:
        template_db: An initialised, empty MLflow database to start from (creating one takes many seconds).
    """
    from mlflow import MlflowClient

    from steward.registry.cards import write_card
    from steward.registry.versions import CHALLENGER, CHAMPION, set_alias

    if template_db is not None:
        shutil.copy(template_db, ws.root / "mlflow.db")
    client = MlflowClient(ws.model_registry.uri, ws.model_registry.uri)
    artifact = ws.root / "artifacts" / "model"
    artifact.mkdir(parents=True, exist_ok=True)
    (artifact / "MLmodel").write_text("flavors: {}\n", encoding="utf-8")
    client.create_registered_model(MODEL)
    for version, auc in ((1, 0.712), (2, 0.734)):
        client.create_model_version(
            MODEL, source=artifact.as_uri(), tags={"steward.metric": "roc_auc", "steward.metric_value": str(auc)}, run_id=None
        )
        write_card(ws, _card(version, auc))
    set_alias(ws, MODEL, CHAMPION, 1, actor="alice", reason="first model", action="promote")
    set_alias(ws, MODEL, CHALLENGER, 2, actor="trainer", reason="trained by run r2", action="register")


def _card(version: int, auc: float) -> dict[str, object]:
    return {
        "model": MODEL,
        "version": version,
        "estimator": "lightgbm",
        "task": "binary",
        "run_id": f"run{version}",
        "created_at": NOW.isoformat(),
        "intended_use": "Predict at scheduling time whether a flight arrives 15 or more minutes late.",
        "training_data": {
            "inputs": ["silver.flights@3", "gold.weather_features@2"],
            "rows": {"train": 8000, "validation": 2000},
            "validation_from": "2013-06-01",
            "label": "late",
            "positive_rate": {"train": 0.21, "validation": 0.24},
            "features": list(FEATURES),
        },
        "metrics": {"main": "roc_auc", "overall": {"roc_auc": auc, "accuracy": 0.81}},
        "slices": {"origin": {"JFK": {"n": 700, "roc_auc": auc - 0.01}, "LGA": {"n": 650, "roc_auc": auc + 0.01}}},
        "fairness": None,
        "feature_importance": {"method": "shap", "sample_size": 500, "importance": {"origin_temp": 0.4, "dep_hour": 0.3}},
        "limitations": ["Trained on 2013 flights from New York airports only."],
        "reproducibility": {"git": "abc123", "env_hash": "e" * 16, "prediction_hash": "p" * 16},
        "gate": None,
    }


def seed_rollout(ws: Workspace) -> None:
    """A canary of v2 against v1: started, advanced twice with per-variant metrics, still running."""
    from steward.serving.rollout import RolloutController
    from steward.serving.router import StepDecision
    from steward.spec import RolloutSpec

    t0 = (NOW - timedelta(hours=3)).timestamp()
    clock = {"t": t0}

    def promote(*_a: object, **_k: object) -> None:
        raise AssertionError("not promoted in the seed")

    ctl = RolloutController(ws, clock=lambda: clock["t"], promote=promote)
    spec = RolloutSpec.model_validate({"mode": "canary", "steps": [5, 25, 50, 100], "slo": {"max_error_rate": 0.02, "max_p99_ms": 80.0}})
    st = ctl.start(MODEL, spec, champion_version="1", challenger_version="2", actor="alice")
    for i, (w, req, err, p99) in enumerate(((25.0, 400, 2, 31.0), (50.0, 900, 6, 38.0), (50.0, 1300, 9, 44.0))):
        clock["t"] += 1800
        metrics = {
            "champion": {"version": "1", "requests": 3000 - req, "errors": 3, "error_rate": 3 / (3000 - req), "p99_ms": 35.0 + i},
            "challenger": {"version": "2", "requests": req, "errors": err, "error_rate": err / req, "p99_ms": p99},
        }
        action = "advance" if i < 2 else "hold"
        if action == "hold":
            # a hold is not recorded by apply(): record the latest window as a manual weight step
            st = ctl.set_weight(MODEL, w, actor="bob", reason="hold at 50% for a longer look")
            continue
        st = ctl.apply(st, StepDecision("advance", w, i + 1, f"window healthy ({req} requests)"), metrics, actor="steward-rollout")


def seed_monitoring(ws: Workspace) -> None:
    """Six hourly windows: drift of origin_temp rising through the PSI thresholds, roc_auc falling, two actions."""
    from steward.monitoring import MonitorVerdict, PolicyAction, PolicyCheck, record_verdict

    for i in range(6):
        end = NOW - timedelta(hours=6 - i)
        drift = {"dep_hour": 0.02 + 0.005 * i, "origin_temp": 0.03 + 0.06 * i, "carrier_delay_rate": 0.05}
        checks = []
        for col, v in drift.items():
            status = "breach" if v >= 0.2 else "warn" if v >= 0.1 else "ok"
            checks.append(PolicyCheck("feature_drift", "features", "psi", col, v, v, 0.2, 0.1, "above", status, 5000, 1200))
        auc = 0.74 - 0.012 * i
        checks.append(
            PolicyCheck("quality", "performance", "roc_auc", "all", auc, auc, 0.69, 0.71, "below", "breach" if auc < 0.69 else "ok", 0, 900)
        )
        actions = []
        if drift["origin_temp"] >= 0.2:
            actions.append(
                PolicyAction(
                    uuid.uuid4().hex, "feature_drift", "alert" if i < 5 else "retrain", MODEL, "1", f"origin_temp psi={drift['origin_temp']:.3f}",
                    None, ("origin_temp",),
                )
            )  # fmt: skip
        statuses = [c.status for c in checks]
        worst = "breach" if "breach" in statuses else "warn" if "warn" in statuses else "ok"
        record_verdict(
            ws,
            MonitorVerdict(
                uuid.uuid4().hex, MODEL, "1", end - timedelta(hours=1), end, 1200, actions, checks, worst, end.isoformat(),
                {"performance": {"all": {"roc_auc": auc, "n": 900}}},
            ),
        )  # fmt: skip
    seed_loop(ws)


def seed_loop(ws: Workspace) -> None:
    """One finished self-healing loop run (started by the retrain action, ended promoting v2), as the loop records it."""
    from steward.loop._state import create_run, finish_run
    from steward.monitoring import list_actions, mark_action

    run = create_run(ws.metadata, MODEL, "feature_drift", "steward-loop", {"challenger_version": 2})
    run.context["done"] = ["training_set", "train", "gate", "rollout", "decide"]
    finish_run(ws.metadata, run, outcome="promoted", reason="v2 passed the gate and the canary")
    started, finished = (NOW - timedelta(minutes=50)).isoformat(), (NOW - timedelta(minutes=10)).isoformat()
    ws.metadata.execute("UPDATE loop_runs SET started_at = ?, finished_at = ? WHERE loop_id = ?", (started, finished, run.loop_id))
    for a in list_actions(ws, MODEL):
        if a["action"] == "retrain":
            mark_action(ws, a["action_id"], "done", note=f"loop {run.loop_id} promoted v2")
    for action in ("loop.start", "loop.promote"):
        ws.audit.append(action, f"model:{MODEL}@2", actor="steward-loop", model=MODEL, details={"loop_id": run.loop_id})


def seed_llm(ws: Workspace) -> None:
    """Gateway usage over the last five days, two keys and two models."""
    rows = []
    for d in range(5):
        day = (NOW - timedelta(days=d)).strftime("%Y-%m-%d")
        for key, model, n, cost in (("team-search", "chat-default", 3 + d, 0.012), ("agent", "chat-large", 2, 0.05)):
            for _ in range(n):
                rows.append((uuid.uuid4().hex, f"{day}T10:00:00+00:00", day, key, model, 120, 40, cost))
    with ws.metadata.transaction():
        for r in rows:
            ws.metadata.execute(
                "INSERT INTO llm_usage (request_id, created_at, day, key_name, model, prompt_tokens, completion_tokens, cost_usd, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'ok')",
                r,
            )


def seed_traces(ws: Workspace) -> None:
    """A few spans (a request with a child LLM call) in the workspace's trace store."""
    from steward.observability.tracing import flush, start_span

    for i in range(3):
        with (
            start_span(ws, "http.request", {"http.route": "/v1/chat/completions", "http.status_code": 200}),
            start_span(ws, "llm.chat", {"llm.model": "chat-default", "llm.tokens_in": 120 + i}),
        ):
            pass
    flush(ws)


def seed_all(root: Path, template_db: Path | None = None) -> Workspace:
    """A project with every section populated."""
    ws = new_project(root)
    seed_registry(ws, template_db)
    seed_rollout(ws)
    seed_monitoring(ws)
    seed_llm(ws)
    seed_traces(ws)
    return ws
