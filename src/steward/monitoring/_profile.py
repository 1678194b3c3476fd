"""Reference profiles: what a model's training data looked like, computed once and stored as JSON.

A profile keeps, per numeric column, the reference quantile cut points with the counts
in each bin, moments (count, mean, M2, min, max), the null count and a bounded uniform
sample (for KS and Wasserstein); per categorical column the category frequencies. The
prediction and the target get the same treatment. Comparing a window against a profile
never re-reads the training data. Profiles are JSON, never pickle.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
from numpy.typing import NDArray

from steward._primitives import utcnow
from steward.errors import NotFound, ValidationFailed

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = [
    "MAX_CATEGORIES",
    "OTHER",
    "PREDICTION",
    "TARGET",
    "ColumnProfile",
    "ReferenceProfile",
    "build_reference_profile",
    "load_profile",
    "profile_for_model",
    "profile_path",
    "quantile_cuts",
    "save_profile",
    "store_profile",
]

logger = logging.getLogger(__name__)

PREDICTION = "prediction"
TARGET = "target"
OTHER = "__other__"
MAX_CATEGORIES = 1000
PROFILE_FORMAT = 1
PROFILE_ARTIFACT = "reference_profile.json"


@dataclass
class ColumnProfile:
    """The summary of one column (reference or window).

    Attributes:
        kind: ``numeric`` or ``categorical``.
        count: Non-null values seen.
        nulls: Null (and NaN / infinite) values seen.
        cuts: Numeric: inner bin edges from the reference; bin ``i`` is ``cuts[i-1] <= x < cuts[i]``.
        counts: Numeric: values per bin (``len(cuts) + 1``).
        mean, m2, min, max: Numeric moments (M2 is the sum of squared deviations).
        sample: Numeric: a bounded uniform sample of the values (all of them when the column is small).
        categories: Categorical: value → count (at most ``MAX_CATEGORIES``, the rest under ``__other__``).
    """

    kind: Literal["numeric", "categorical"]
    count: int = 0
    nulls: int = 0
    cuts: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    counts: NDArray[np.int64] = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    mean: float = 0.0
    m2: float = 0.0
    min: float | None = None
    max: float | None = None
    sample: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    categories: dict[str, int] = field(default_factory=dict)

    @property
    def std(self) -> float:
        """Population standard deviation (0 for fewer than two values)."""
        return math.sqrt(self.m2 / self.count) if self.count > 1 else 0.0

    @property
    def null_share(self) -> float:
        """Share of null values (0 for an empty column)."""
        total = self.count + self.nulls
        return self.nulls / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = {"kind": self.kind, "count": self.count, "nulls": self.nulls}
        if self.kind == "numeric":
            out |= {
                "cuts": [float(x) for x in self.cuts],
                "counts": [int(x) for x in self.counts],
                "mean": self.mean,
                "m2": self.m2,
                "min": self.min,
                "max": self.max,
                "sample": [float(x) for x in self.sample],
            }
        else:
            out["categories"] = dict(self.categories)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnProfile:
        """Inverse of :meth:`to_dict`."""
        kind = data["kind"]
        if kind == "numeric":
            return cls(
                kind="numeric",
                count=int(data["count"]),
                nulls=int(data["nulls"]),
                cuts=np.asarray(data["cuts"], dtype=np.float64),
                counts=np.asarray(data["counts"], dtype=np.int64),
                mean=float(data["mean"]),
                m2=float(data["m2"]),
                min=data.get("min"),
                max=data.get("max"),
                sample=np.asarray(data.get("sample", []), dtype=np.float64),
            )
        return cls(
            kind="categorical",
            count=int(data["count"]),
            nulls=int(data["nulls"]),
            categories={str(k): int(v) for k, v in data["categories"].items()},
        )


@dataclass
class ReferenceProfile:
    """Per-column profiles of a model's training data, its predictions and its target.

    Attributes:
        columns: Feature name → profile.
        prediction: Profile of the model's predictions on the reference (or None).
        target: Profile of the target (or None).
        n_rows: Rows profiled.
        bins: Quantile bins requested per numeric column.
        sample_size: Bound of each numeric sample (None: all values kept).
        created_at: ISO timestamp.
        meta: Free-form (model name, version, source table@version).
    """

    columns: dict[str, ColumnProfile]
    prediction: ColumnProfile | None = None
    target: ColumnProfile | None = None
    n_rows: int = 0
    bins: int = 10
    sample_size: int | None = 10000
    created_at: str = field(default_factory=utcnow)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        """Profiled features in order."""
        return list(self.columns)

    @property
    def categorical(self) -> list[str]:
        """Names of categorical features."""
        return [n for n, c in self.columns.items() if c.kind == "categorical"]

    def column(self, on: str, name: str | None = None) -> ColumnProfile | None:
        """The profile of a feature (``on="features"``), the prediction or the target."""
        if on == "prediction":
            return self.prediction
        if on == "target":
            return self.target
        return self.columns.get(name or "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "format": PROFILE_FORMAT,
            "n_rows": self.n_rows,
            "bins": self.bins,
            "sample_size": self.sample_size,
            "created_at": self.created_at,
            "meta": self.meta,
            "columns": {k: v.to_dict() for k, v in self.columns.items()},
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "target": self.target.to_dict() if self.target else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        """Inverse of :meth:`to_dict`."""
        if data.get("format") != PROFILE_FORMAT:
            raise ValidationFailed(
                f"unsupported reference profile format {data.get('format')!r}", hint="rebuild it with 'steward monitor profile'"
            )
        return cls(
            columns={k: ColumnProfile.from_dict(v) for k, v in data["columns"].items()},
            prediction=ColumnProfile.from_dict(data["prediction"]) if data.get("prediction") else None,
            target=ColumnProfile.from_dict(data["target"]) if data.get("target") else None,
            n_rows=int(data.get("n_rows", 0)),
            bins=int(data.get("bins", 10)),
            sample_size=data.get("sample_size"),
            created_at=str(data.get("created_at", "")),
            meta=dict(data.get("meta") or {}),
        )


# -- building ------------------------------------------------------------------------------


def finite_values(values: Any) -> tuple[NDArray[np.float64], int]:
    """Finite float values of a Series/array and how many were null, NaN or infinite."""
    if isinstance(values, pl.Series):
        arr = values.cast(pl.Float64, strict=False).to_numpy(allow_copy=True)
    else:
        arr = np.asarray(values, dtype=np.float64)
    arr = np.asarray(arr, dtype=np.float64)
    ok = np.isfinite(arr)
    if ok.all():
        return arr, 0
    return arr[ok], int((~ok).sum())


def sorted_quantiles(sorted_values: NDArray[np.float64], qs: NDArray[np.float64]) -> NDArray[np.float64]:
    """Quantiles of an ascending array, by linear interpolation (numpy's default method), without re-partitioning."""
    n = sorted_values.size
    pos = qs * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def quantile_cuts(values: NDArray[np.float64], bins: int, *, assume_sorted: bool = False) -> NDArray[np.float64]:
    """Inner cut points at the reference quantiles (deduplicated).

    A constant column gets cuts ``[v, next float after v]`` so that values below,
    at and above the constant land in three different bins.
    """
    if values.size == 0:
        return np.empty(0)
    s = values if assume_sorted else np.sort(values)
    lo, hi = float(s[0]), float(s[-1])
    if lo == hi:
        return np.array([lo, np.nextafter(lo, math.inf)])
    cuts = np.unique(sorted_quantiles(s, np.linspace(0, 1, bins + 1)[1:-1]))
    # a cut at the minimum would leave the first bin empty by construction
    cuts = cuts[cuts > lo]
    return cuts if cuts.size else np.array([np.nextafter(lo, math.inf)])


def bin_counts(values: NDArray[np.float64], cuts: NDArray[np.float64], *, assume_sorted: bool = False) -> NDArray[np.int64]:
    """Counts per bin for the given inner cut points (bin ``i`` holds ``cuts[i-1] <= x < cuts[i]``)."""
    if assume_sorted:
        # on sorted values, a handful of binary searches replace one per value
        edges = np.searchsorted(values, cuts, side="left")
        return np.diff(np.concatenate([[0], edges, [values.size]])).astype(np.int64)
    idx = np.searchsorted(cuts, values, side="right")
    return np.bincount(idx, minlength=cuts.size + 1).astype(np.int64)


def bounded_sample(values: NDArray[np.float64], size: int | None, rng: np.random.Generator) -> NDArray[np.float64]:
    """A uniform sample without replacement of at most ``size`` values (all of them, not copied, when None)."""
    if size is None or values.size <= size:
        return values
    return values[rng.choice(values.size, size=size, replace=False)]


def _is_categorical(values: Any) -> bool:
    if isinstance(values, pl.Series):
        dt = values.dtype
        if dt in (pl.Utf8, pl.Categorical, pl.Boolean) or isinstance(dt, pl.Enum):
            return True
        if dt.is_integer():
            return bool(values.n_unique() <= 20)
        return False
    arr = np.asarray(values)
    if arr.dtype.kind in "OUSb":
        return True
    if arr.dtype.kind in "iu":
        return bool(np.unique(arr).size <= 20)
    return False


def numeric_profile(values: Any, *, bins: int, sample_size: int | None, rng: np.random.Generator) -> ColumnProfile:
    """Profile a numeric column (cut points from its own quantiles)."""
    arr, nulls = finite_values(values)
    arr = np.sort(arr)  # one sort serves the quantiles, the bin counts, min and max
    cuts = quantile_cuts(arr, bins, assume_sorted=True)
    mean = float(arr.mean()) if arr.size else 0.0
    return ColumnProfile(
        kind="numeric",
        count=int(arr.size),
        nulls=nulls,
        cuts=cuts,
        counts=bin_counts(arr, cuts, assume_sorted=True),
        mean=mean,
        m2=float(np.sum((arr - mean) ** 2)) if arr.size else 0.0,
        min=float(arr[0]) if arr.size else None,
        max=float(arr[-1]) if arr.size else None,
        sample=bounded_sample(arr, sample_size, rng),
    )


def category_counts(values: Any) -> tuple[dict[str, int], int]:
    """Category → count (as strings) and the null count."""
    s = values if isinstance(values, pl.Series) else pl.Series("v", np.asarray(values).tolist())
    nulls = int(s.null_count())
    vc = s.drop_nulls().cast(pl.Utf8).value_counts()
    keys = vc.get_column(vc.columns[0]).to_list()
    cnts = vc.get_column(vc.columns[1]).to_list()
    return {str(k): int(c) for k, c in zip(keys, cnts, strict=True)}, nulls


def cap_categories(cats: dict[str, int], limit: int = MAX_CATEGORIES) -> dict[str, int]:
    """Keep the ``limit - 1`` most frequent categories and fold the rest into ``__other__``."""
    if len(cats) <= limit:
        return cats
    items = sorted(cats.items(), key=lambda kv: -kv[1])
    kept = dict(items[: limit - 1])
    kept[OTHER] = kept.get(OTHER, 0) + sum(v for _, v in items[limit - 1 :])
    return kept


def categorical_profile(values: Any) -> ColumnProfile:
    """Profile a categorical column."""
    cats, nulls = category_counts(values)
    return ColumnProfile(kind="categorical", count=sum(cats.values()), nulls=nulls, categories=cap_categories(cats))


def build_reference_profile(
    frame: pl.DataFrame,
    feature_names: list[str],
    categorical: list[str] | None = None,
    prediction: NDArray[Any] | None = None,
    target: NDArray[Any] | None = None,
    *,
    bins: int = 10,
    sample_size: int | None = 10000,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
) -> ReferenceProfile:
    """Profile a model's training (or validation) data once, to compare windows against later.

    Args:
        frame: The reference rows.
        feature_names: Features to profile (columns of ``frame``).
        categorical: Which of them are categorical; the rest are numeric.
        prediction: The model's predictions on ``frame`` (probabilities or values).
        target: The true labels of ``frame``.
        bins: Quantile bins per numeric column.
        sample_size: Values kept per numeric column for KS/Wasserstein (None keeps all: exact, large).
        seed: Seed of the sampling, so a profile is reproducible.
        meta: Stored as is (model, version, source table@version, ...).

    Raises:
        ValidationFailed: a feature is not a column of ``frame``.
    """
    missing = [f for f in feature_names if f not in frame.columns]
    if missing:
        raise ValidationFailed(f"reference frame lacks features {missing}", hint="pass the training frame the model was fitted on")
    cats = set(categorical or [])
    rng = np.random.default_rng(seed)
    columns: dict[str, ColumnProfile] = {}
    for name in feature_names:
        s = frame.get_column(name)
        if name in cats:
            columns[name] = categorical_profile(s)
        else:
            columns[name] = numeric_profile(s, bins=bins, sample_size=sample_size, rng=rng)
    pred_p = (
        numeric_profile(np.asarray(prediction, dtype=np.float64), bins=bins, sample_size=sample_size, rng=rng)
        if prediction is not None
        else None
    )
    targ_p: ColumnProfile | None = None
    if target is not None:
        targ_p = (
            categorical_profile(target)
            if _is_categorical(target)
            else numeric_profile(np.asarray(target, dtype=np.float64), bins=bins, sample_size=sample_size, rng=rng)
        )
    return ReferenceProfile(
        columns=columns, prediction=pred_p, target=targ_p, n_rows=frame.height, bins=bins, sample_size=sample_size, meta=dict(meta or {})
    )


# -- storage -------------------------------------------------------------------------------


def save_profile(profile: ReferenceProfile, path: str | Path) -> Path:
    """Write a profile as JSON (atomically: a temp file renamed over the target)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(profile.to_dict(), allow_nan=False), encoding="utf-8")
    tmp.replace(p)
    return p


def load_profile(path: str | Path) -> ReferenceProfile:
    """Read a profile written by :func:`save_profile`.

    Raises:
        NotFound: no such file.
        ValidationFailed: the file is not a profile.
    """
    p = Path(path)
    if not p.exists():
        raise NotFound(f"no reference profile at {p}", hint="build one with 'steward monitor profile'")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValidationFailed(f"{p} is not valid JSON: {exc}") from None
    return ReferenceProfile.from_dict(data)


def profile_path(ws: Workspace, name: str, version: str | int) -> Path:
    """Where the embedded store keeps a model version's profile."""
    return ws.root / "monitoring" / "profiles" / name / f"{version}.json"


def store_profile(ws: Workspace, profile: ReferenceProfile, name: str, version: str | int) -> Path:
    """Keep a profile for ``name``/``version`` in the workspace (used when no registry artifact exists)."""
    profile.meta.setdefault("model", name)
    profile.meta.setdefault("version", str(version))
    return save_profile(profile, profile_path(ws, name, version))


def profile_for_model(ws: Workspace, name: str, version: str | int) -> ReferenceProfile:
    """The reference profile stored with a model version.

    Looks in the workspace's profile store first, then asks the model registry and run tracker
    for the ``reference_profile.json`` artifact of the version's run.

    Raises:
        NotFound: neither has a profile for this version.
    """
    local = profile_path(ws, name, version)
    if local.exists():
        return load_profile(local)
    fetched = _fetch_from_registry(ws, name, version)
    if fetched is not None:
        return fetched
    raise NotFound(
        f"no reference profile for model {name} version {version}",
        code="monitor.no_profile",
        hint=f"train with profiling enabled, or run 'steward monitor profile --model {name} --version {version} ...'",
    )


def _fetch_from_registry(ws: Workspace, name: str, version: str | int) -> ReferenceProfile | None:
    """The ``reference_profile.json`` artifact of the tracked run behind a registered version, if any."""
    import tempfile

    registry = ws.model_registry
    if not registry.exists():
        return None  # the embedded tracking store was never created: nothing is registered
    try:
        mv = registry.get_version(name, int(version))
    except (NotFound, ValueError) as exc:
        logger.info("no registered version %s/%s: %s", name, version, exc)
        return None
    if mv.run_id is None:
        return None
    with tempfile.TemporaryDirectory(prefix="steward-profile-") as tmp:
        for artifact in (PROFILE_ARTIFACT, f"monitoring/{PROFILE_ARTIFACT}"):
            try:
                local = ws.tracker.download_artifact(mv.run_id, artifact, Path(tmp))
            except NotFound as exc:
                logger.debug("no %s in run %s: %s", artifact, mv.run_id, exc)
                continue
            return load_profile(local)
    return None
