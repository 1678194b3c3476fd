"""Tracking and registry on the real PostgreSQL (``storage.tracking_uri``)."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from _train_synth import make_frame, make_workspace, training_set

from steward.registry import get_alias_version, load_verified_model, run_gate
from steward.training import train_model


def test_tracking_and_registry_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    ws = make_workspace(tmp_path, project="pg", tracking_uri=pg_url, name="pg_model", params={"n_estimators": 10, "num_leaves": 7})
    assert ws.tracker.uri.startswith("postgresql+psycopg://") and ws.model_registry.uri == ws.tracker.uri
    res = train_model(ws, training_set(make_frame(1200), version=3))
    assert not (ws.root / "mlflow.db").exists()  # nothing tracked in the SQLite default
    with psycopg.connect(pg_url) as conn:
        run = conn.execute("SELECT status FROM runs WHERE run_uuid = %s", (res.run_id,)).fetchone()
        tag = conn.execute("SELECT value FROM tags WHERE run_uuid = %s AND key = 'steward.data_versions'", (res.run_id,)).fetchone()
        alias = conn.execute("SELECT version FROM registered_model_aliases WHERE name = 'pg_model' AND alias = 'challenger'").fetchone()
    assert run == ("FINISHED",)
    assert tag is not None and json.loads(tag[0]) == {"silver.flights": 3}
    assert alias == (1,)
    assert get_alias_version(ws, "pg_model", "challenger") == 1
    model, info = load_verified_model(ws, "pg_model", "challenger")
    assert type(model).__name__ == "Booster" and info.metadata["steward"]["data_versions"] == {"silver.flights": 3}
    assert run_gate(ws).challenger_version == 1
