"""Model quality once the ground truth arrives: join delayed labels, metrics per window and per slice.

Labels land later than predictions (a flight's arrival delay is known after it lands).
They join the prediction log either by ``request_id`` (a ``logs.labels`` table) or by an
entity key carried in the logged features (for flights: year, month, day, carrier,
flight, origin, sched_dep_time). Concept drift shows here as a drop in quality while the
inputs may look stable.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike

from steward._primitives import parse_duration
from steward.errors import ValidationFailed
from steward.monitoring._windows import decode_features

if TYPE_CHECKING:
    from steward.spec import LabelsSpec
    from steward.workspace import Workspace

__all__ = [
    "HIGHER_IS_BETTER",
    "LABEL",
    "classification_metrics",
    "join_labels",
    "load_labels",
    "performance_by_window",
    "roc_auc",
]

logger = logging.getLogger(__name__)

LABEL = "label"
HIGHER_IS_BETTER = {"roc_auc": True, "accuracy": True, "precision": True, "recall": True, "f1": True, "brier": False, "log_loss": False}


def roc_auc(y_true: ArrayLike, y_score: ArrayLike) -> float | None:
    """Area under the ROC curve via the rank-sum (ties get average ranks); None with one class only."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(y_score, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pl.Series(s).rank("average").to_numpy()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_metrics(y_true: ArrayLike, y_score: ArrayLike, *, threshold: float = 0.5) -> dict[str, float | None]:
    """Binary classification metrics of probabilities against 0/1 labels.

    Undefined metrics (AUC with one class, precision with no positive prediction) are
    None, never NaN. Log loss clips probabilities to [1e-15, 1 - 1e-15].
    """
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_score, dtype=np.float64)
    n = int(y.size)
    if n == 0:
        return {"n": 0.0, "roc_auc": None, "accuracy": None, "precision": None, "recall": None, "f1": None, "brier": None, "log_loss": None,
                "positive_rate": None, "predicted_positive_rate": None, "mean_prediction": None}  # fmt: skip
    pred = p >= threshold
    pos = y >= 0.5
    tp = int((pred & pos).sum())
    fp = int((pred & ~pos).sum())
    fn = int((~pred & pos).sum())
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * precision * recall / (precision + recall) if precision is not None and recall is not None and precision + recall > 0 else None
    pc = np.clip(p, 1e-15, 1 - 1e-15)
    return {
        "n": float(n),
        "roc_auc": roc_auc(pos, p),
        "accuracy": float((pred == pos).mean()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))),
        "positive_rate": float(pos.mean()),
        "predicted_positive_rate": float(pred.mean()),
        "mean_prediction": float(p.mean()),
    }


def load_labels(ws: Workspace, spec: LabelsSpec, *, keys: list[str] | None = None, predictions: pl.DataFrame | None = None) -> pl.DataFrame:
    """The label table: join keys (or ``request_id``) plus a 0/1 ``label`` column (and ``label_ts`` when known).

    ``spec.expr`` (SQL, e.g. ``arr_delay >= 15``) is evaluated over ``spec.source``; without it
    the source must have a ``label`` column.

    Args:
        predictions: The logged predictions the labels are for. When given, only labels that can
            join them are collected: a semi-join on the keys and, for ``match: asof``, outcome
            times within ``tolerance`` of the predictions' times (in the join's direction). The
            join with :func:`join_labels` gives the same rows as with the whole table, while the
            collected frame stays bounded by the window instead of growing with the label table.
    """
    join = list(keys if keys is not None else spec.join) or ["request_id"]
    lf = ws.lake.scan(spec.source)
    schema = lf.collect_schema()
    names = schema.names()
    label_expr = pl.sql_expr(spec.expr) if spec.expr else pl.col(LABEL)
    if not spec.expr and LABEL not in names:
        raise ValidationFailed(f"{spec.source} has no 'label' column", hint="set monitoring.labels.expr, e.g. 'arr_delay >= 15'")
    missing = [k for k in join if k not in names]
    if missing:
        raise ValidationFailed(f"{spec.source} lacks join keys {missing}", hint="fix monitoring.labels.join")
    cols = [*[pl.col(k) for k in join], label_expr.cast(pl.Int8).alias(LABEL)]
    if spec.match == "asof":
        assert spec.time_column is not None  # the spec validator guarantees it
        if spec.time_column not in names:
            raise ValidationFailed(f"{spec.source} has no column {spec.time_column!r}", hint="fix monitoring.labels.time_column")
        # an entity has many outcomes over time: keep them all, ordered, for the as-of join
        cols.append(_as_utc(pl.col(spec.time_column), schema[spec.time_column]).alias("label_ts"))
        sel = lf.select(cols).filter(pl.col(LABEL).is_not_null() & pl.col("label_ts").is_not_null())
        if predictions is not None:
            sel = _within_reach(_matching_keys(sel, schema, predictions, join), predictions, spec.direction, spec.tolerance)
        return sel.collect().sort("label_ts")
    if "ts" in names and "ts" not in join:
        cols.append(pl.col("ts").alias("label_ts"))
    if predictions is not None:
        lf = _matching_keys(lf, schema, predictions, join)
    out = lf.select(cols).filter(pl.col(LABEL).is_not_null()).collect()
    # one label per key: the latest correction wins
    if "label_ts" in out.columns:
        out = out.sort("label_ts")
    return out.unique(subset=join, keep="last", maintain_order=True)


def _common_type(a: pl.DataType, b: pl.DataType) -> pl.DataType:
    """The type both sides of a key are cast to when they differ (the log may store JSON numbers as Int64, a table Int32)."""
    if a == b:
        return a
    return pl.Utf8() if (a == pl.Utf8 or b == pl.Utf8) else pl.Float64() if (a.is_float() or b.is_float()) else pl.Int64()


def _matching_keys(lf: pl.LazyFrame, schema: pl.Schema, predictions: pl.DataFrame, keys: list[str]) -> pl.LazyFrame:
    """``lf`` lazily restricted to rows whose keys occur among the predictions (a semi-join, order kept)."""
    preds = decode_features(predictions, keys)
    if any(k not in preds.columns for k in keys):
        return lf  # join_labels names the missing keys
    types = {k: _common_type(schema[k], preds.schema[k]) for k in keys}
    wanted = preds.select([pl.col(k).cast(types[k]) for k in keys]).unique()
    # same casts and null semantics as the inner join in join_labels, so no joinable label is dropped
    return lf.join(wanted.lazy(), left_on=[pl.col(k).cast(types[k]) for k in keys], right_on=keys, how="semi", maintain_order="left")


def _within_reach(lf: pl.LazyFrame, predictions: pl.DataFrame, direction: str, tolerance: str) -> pl.LazyFrame:
    """Outcomes (``label_ts``) an as-of join of these predictions can reach: within ``tolerance`` in ``direction``."""
    if "ts" not in predictions.columns or predictions.height == 0:
        return lf
    ts = predictions.select(_as_utc(pl.col("ts"), predictions.schema["ts"]).alias("ts")).get_column("ts").drop_nulls()
    if ts.len() == 0:
        return lf
    lo, hi, tol = ts.min(), ts.max(), parse_duration(tolerance)
    if direction in ("backward", "nearest"):
        lo = lo - tol  # type: ignore[operator]
    if direction in ("forward", "nearest"):
        hi = hi + tol  # type: ignore[operator]
    # inclusive bounds: the join's tolerance is inclusive
    return lf.filter(pl.col("label_ts").is_between(pl.lit(lo), pl.lit(hi), closed="both"))


def _as_utc(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A datetime (naive = UTC), date or ISO string column as ``Datetime(us, UTC)``, so both sides of an as-of join compare."""
    if isinstance(dtype, pl.Datetime):
        e = expr.dt.cast_time_unit("us")
        return e.dt.replace_time_zone("UTC") if dtype.time_zone is None else e.dt.convert_time_zone("UTC")
    if dtype == pl.Date:
        return expr.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return expr.str.to_datetime(time_unit="us", time_zone="UTC")


def join_labels(
    predictions: pl.DataFrame,
    labels: pl.DataFrame,
    *,
    on: list[str] | None = None,
    now: datetime | None = None,
    delay: str | None = None,
    asof: tuple[str, str] | None = None,
) -> pl.DataFrame:
    """Inner-join logged predictions with their labels.

    Args:
        on: Join keys (default ``request_id``); keys may live inside a JSON ``features`` column.
        now, delay: When both are given, predictions younger than ``now - delay`` are left out:
            their labels may not have arrived yet, and judging them would bias the metrics.
        asof: ``(direction, tolerance)``: ``on`` names an entity and ``labels`` has a ``label_ts``;
            each prediction (by its ``ts``) takes its entity's outcome nearest in time in that
            direction within the tolerance. Predictions without one are left out.
    """
    keys = list(on or ["request_id"])
    preds = decode_features(predictions, keys)
    missing = [k for k in keys if k not in preds.columns]
    if missing:
        raise ValidationFailed(f"the prediction log lacks join keys {missing}", hint="log them as features, or join by request_id")
    if now is not None and delay is not None and "ts" in preds.columns:
        cutoff = now - parse_duration(delay)
        preds = preds.filter(pl.col("ts") <= cutoff)
    # cast keys on both sides to a common type (the log may store JSON numbers as Int64, the table as Int32)
    casts_p, casts_l = [], []
    for k in keys:
        lt, pt = labels.schema[k], preds.schema[k]
        if lt != pt:
            target = _common_type(lt, pt)
            casts_p.append(pl.col(k).cast(target))
            casts_l.append(pl.col(k).cast(target))
    if casts_p:
        preds = preds.with_columns(casts_p)
        labels = labels.with_columns(casts_l)
    right = labels.drop([c for c in labels.columns if c in preds.columns and c not in keys])
    if asof is None:
        return preds.join(right, on=keys, how="inner")
    direction, tolerance = asof
    if "ts" not in preds.columns or "label_ts" not in right.columns:
        raise ValidationFailed(
            "an as-of label join needs the prediction time (ts) and the outcome time", hint="set monitoring.labels.time_column"
        )
    left = preds.with_columns(_as_utc(pl.col("ts"), preds.schema["ts"]).alias("_pred_ts")).sort("_pred_ts")
    right = right.sort("label_ts")
    joined = left.join_asof(
        right,
        left_on="_pred_ts",
        right_on="label_ts",
        by=keys,
        strategy=direction,  # type: ignore[arg-type]
        tolerance=parse_duration(tolerance),
        check_sortedness=False,
    )
    return joined.filter(pl.col(LABEL).is_not_null()).drop("_pred_ts")


def performance_by_window(
    joined: pl.DataFrame,
    *,
    by: str = "time",
    size: str | int = "1d",
    slices: list[str] | None = None,
    threshold: float = 0.5,
    min_rows: int = 1,
) -> pl.DataFrame:
    """Metrics per window, overall (``slice`` = ``all``) and per value of each slice column.

    Returns one row per (window, slice, value) with ``window_start``, ``window_end``, ``slice``,
    ``slice_value`` and every metric of :func:`classification_metrics`. Slices with fewer than
    ``min_rows`` labelled rows are left out.
    """
    if joined.height == 0:
        return pl.DataFrame()
    if by == "count":
        step = int(size)
        frame = joined.with_row_index("__i").with_columns((pl.col("__i") // step).alias("__w"))
    else:
        step_us = int(parse_duration(size).total_seconds() * 1_000_000)
        frame = joined.with_columns((pl.col("ts").cast(pl.Datetime("us", "UTC")).dt.epoch("us") // step_us).alias("__w"))
    rows: list[dict[str, Any]] = []
    for (w,), part in frame.partition_by("__w", as_dict=True, maintain_order=True).items():
        start = end = None
        if by != "count":
            start = datetime.fromtimestamp(int(w) * step_us / 1e6, tz=UTC)  # type: ignore[call-overload]
            end = datetime.fromtimestamp((int(w) + 1) * step_us / 1e6, tz=UTC)  # type: ignore[call-overload]
        groups: list[tuple[str, str, pl.DataFrame]] = [("all", "all", part)]
        for col in slices or []:
            if col in part.columns:
                for (val,), sub in part.partition_by(col, as_dict=True, maintain_order=True).items():
                    groups.append((col, str(val), sub))
        for sl, val, sub in groups:
            if sub.height < min_rows:
                continue
            m = classification_metrics(sub.get_column(LABEL).to_numpy(), sub.get_column("prediction").to_numpy(), threshold=threshold)
            rows.append({"window": int(w), "window_start": start, "window_end": end, "slice": sl, "slice_value": val, **m})  # type: ignore[call-overload]
    out = pl.DataFrame(rows)
    return out.sort(["window", "slice", "slice_value"])


def is_breach(metric: str, value: float | None, threshold: float) -> bool:
    """Whether a metric value is worse than its threshold (direction per metric)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return value < threshold if HIGHER_IS_BETTER.get(metric, True) else value > threshold
