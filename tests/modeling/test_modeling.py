"""The modelling layer on its own: label typing, the split's matrices, scoring with the stored encoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from steward.errors import NotFound, ValidationFailed
from steward.features.training_set import TrainingSet
from steward.modeling import (
    encode,
    fit,
    fit_encoding,
    label_array,
    model_encoding,
    predict_proba,
    prediction_hash,
    resolve_estimator,
    score_frame,
)
from steward.spec import ModelSpec, SplitSpec
from steward.training.evaluation import evaluate, prepare


def _frame(n: int = 400, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    color = rng.choice(["red", "blue", "green"], size=n)
    late = (x + (color == "red") + rng.normal(scale=0.5, size=n)) > 0.5
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return pl.DataFrame({"t": [start + timedelta(hours=i) for i in range(n)], "x": x, "color": color, "late": late})


def _set(frame: pl.DataFrame) -> TrainingSet:
    return TrainingSet(
        frame=frame, inputs=[], feature_names=["x", "color"], label="late", event_time="t", entity_keys=[], categorical=["color"]
    )


def test_label_array_types_labels_and_names_a_null_label() -> None:
    frame = pl.DataFrame({"late": [True, False, True]})
    y = label_array(frame, "late")
    assert y.dtype.kind == "i" and y.tolist() == [1, 0, 1]
    with pytest.raises(ValidationFailed, match="label 'late' has nulls") as err:
        label_array(pl.DataFrame({"late": [True, None]}), "late")
    assert err.value.details["errors"] == ["late"]


def test_score_frame_encodes_with_the_models_stored_encoding() -> None:
    frame = _frame()
    encoding = fit_encoding(frame, ["x", "color"], ["color"])
    x = encode(frame, encoding)
    model = fit(resolve_estimator("sklearn.linear_model.LogisticRegression"), {}, 0, x, label_array(frame, "late"), ["color"])
    info = SimpleNamespace(metadata={"steward": {"encoding": encoding.to_dict()}})
    assert model_encoding(info) == encoding
    # raw rows in, the same probabilities as encoding by hand (an unseen category encodes as missing)
    raw = frame.with_columns(pl.when(pl.col("color") == "green").then(pl.lit("violet")).otherwise(pl.col("color")).alias("color"))
    expected = predict_proba(model, encode(raw, encoding))
    assert np.allclose(score_frame(model, info, raw), expected)
    assert not np.allclose(expected, predict_proba(model, x))  # the unseen category did change the scores
    with pytest.raises(NotFound, match="no Steward metadata"):
        score_frame(model, SimpleNamespace(metadata={}), raw)


def test_prepare_splits_by_time_and_refuses_a_single_class() -> None:
    frame = _frame()
    data = prepare(_set(frame), SplitSpec(validation_fraction=0.25))
    assert data.train_df["t"].max() < data.valid_df["t"].min()
    assert data.rows == {"train": 300, "validation": 100} and data.cut == data.valid_df["t"].min().isoformat()
    assert data.cat_features == ["color"] and list(data.x_train.columns) == ["x", "color"]
    one_class = frame.with_columns(pl.when(pl.col("t") < data.valid_df["t"].min()).then(False).otherwise(pl.col("late")).alias("late"))
    with pytest.raises(ValidationFailed, match="single class"):
        prepare(_set(one_class), SplitSpec(validation_fraction=0.25))


def test_evaluate_scores_both_sides_and_hashes_the_validation_predictions() -> None:
    data = prepare(_set(_frame()), SplitSpec(validation_fraction=0.25))
    ref = resolve_estimator("sklearn.linear_model.LogisticRegression")
    model = fit(ref, {}, 0, data.x_train, data.y_train, data.cat_features)
    ms = ModelSpec.model_validate(
        {"name": "m", "slices": ["color"], "fairness": {"column": "color", "metric": "roc_auc", "min_group_size": 5}}
    )
    ev = evaluate(ms, model, data)
    assert ev.prediction_hash == prediction_hash(predict_proba(model, data.x_valid))
    assert ev.overall["roc_auc"] is not None and ev.overall["roc_auc"] > 0.7
    assert set(ev.slices["color"]) == {"red", "blue", "green"}
    assert sum(g["n"] for g in ev.slices["color"].values()) == 100
    assert ev.fairness is not None and ev.fairness["column"] == "color" and ev.fairness["gap"] is not None
    assert len(ev.p_train) == 300 and len(ev.p_valid) == 100
