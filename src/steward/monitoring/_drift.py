"""Compare a window profile against a reference profile: every detector, every column.

Numeric columns are compared on the reference's quantile bins (PSI, KL, JS, chi-squared)
and on the bounded samples (KS, Wasserstein, scaled by the reference's exact standard
deviation). Categorical columns are compared on category frequencies aligned over the
union of categories (unseen categories count as empty reference bins). With
``psi_binning="evidently"`` the binned detectors use Evidently's binning instead
(Sturges bins over both samples; value bins for <= 20 distinct reference values), so
numbers can be compared with Evidently's side by side.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from steward.monitoring import _stats
from steward.monitoring._profile import ColumnProfile, ReferenceProfile

__all__ = ["ALL_DETECTORS", "DriftOptions", "DriftResult", "compare_columns", "compare_profiles"]

logger = logging.getLogger(__name__)

ALL_DETECTORS = ("psi", "kl", "js", "wasserstein", "ks", "ks_stat", "chi2", "null_share")
# detectors whose value is a p-value: small means drift
P_VALUE_DETECTORS = frozenset({"ks", "chi2"})
NUMERIC_ONLY = frozenset({"wasserstein", "ks", "ks_stat"})


@dataclass(frozen=True)
class DriftOptions:
    """Choices that differ between textbook definitions and Evidently's defaults.

    Attributes:
        psi_binning: ``quantile`` (reference deciles, textbook) or ``evidently``.
        wasserstein_norm: ``std`` (default), ``evidently``, ``iqr`` or ``none``.
        js_base: Logarithm base of the JS distance (2: textbook, bounded by 1; ``math.e``: Evidently).
        zero_fill: Smoothing of empty bins for PSI and KL (``epsilon`` or ``evidently``).
        chi2_mode: ``homogeneity`` (2×k contingency, textbook) or ``goodness`` (Evidently).
    """

    psi_binning: Literal["quantile", "evidently"] = "quantile"
    wasserstein_norm: _stats.WassersteinNorm = "std"
    js_base: float = 2.0
    zero_fill: _stats.ZeroFill = "epsilon"
    chi2_mode: Literal["homogeneity", "goodness"] = "homogeneity"

    @classmethod
    def evidently(cls) -> DriftOptions:
        """Options that reproduce Evidently 0.7's numbers."""
        return cls(psi_binning="evidently", wasserstein_norm="evidently", js_base=math.e, zero_fill="evidently", chi2_mode="goodness")


@dataclass(frozen=True)
class DriftResult:
    """One detector on one column.

    Attributes:
        on: ``features``, ``prediction`` or ``target``.
        column: Feature name (``prediction`` / ``target`` for those).
        detector: Which statistic.
        value: The number policies compare (a p-value for ``ks`` and ``chi2``); None when undefined.
        statistic: The test statistic behind a p-value (KS D, chi-squared), else equal to ``value``.
        n_reference: Non-null reference values.
        n_window: Non-null window values.
        status: ``ok`` or ``no_data`` (a side has no non-null values).
    """

    on: str
    column: str
    detector: str
    value: float | None
    statistic: float | None
    n_reference: int
    n_window: int
    status: Literal["ok", "no_data"] = "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _aligned_categories(ref: ColumnProfile, cur: ColumnProfile) -> tuple[list[str], NDArray[np.float64], NDArray[np.float64]]:
    keys = sorted(set(ref.categories) | set(cur.categories))
    r = np.array([ref.categories.get(k, 0) for k in keys], dtype=np.float64)
    c = np.array([cur.categories.get(k, 0) for k in keys], dtype=np.float64)
    return keys, r, c


def _evidently_bins(ref: ColumnProfile, cur: ColumnProfile) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    a, b = ref.sample, cur.sample
    uniq = np.unique(a)
    if uniq.size <= 20:
        keys = np.union1d(uniq, np.unique(b))
        ra = np.searchsorted(keys, a)
        rb = np.searchsorted(keys, b)
        return np.bincount(ra, minlength=keys.size).astype(np.float64), np.bincount(rb, minlength=keys.size).astype(np.float64)
    edges = _stats.sturges_edges(a, b)
    return np.histogram(a, edges)[0].astype(np.float64), np.histogram(b, edges)[0].astype(np.float64)


def compare_columns(
    ref: ColumnProfile,
    cur: ColumnProfile,
    *,
    on: str,
    column: str,
    detectors: tuple[str, ...] | list[str] = ALL_DETECTORS,
    options: DriftOptions | None = None,
) -> list[DriftResult]:
    """Every requested detector for one column (detectors that do not apply to the column's kind are skipped)."""
    opt = options or DriftOptions()
    out: list[DriftResult] = []
    numeric = ref.kind == "numeric" and cur.kind == "numeric"
    if numeric:
        if opt.psi_binning == "evidently":
            rc, cc = _evidently_bins(ref, cur)
        else:
            rc, cc = ref.counts.astype(np.float64), cur.counts.astype(np.float64)
    else:
        _keys, rc, cc = _aligned_categories(ref, cur)
    zero_fill: _stats.ZeroFill = "evidently" if opt.psi_binning == "evidently" else opt.zero_fill

    def add(det: str, value: float | None, stat: float | None = None) -> None:
        status: Literal["ok", "no_data"] = "ok" if value is not None else "no_data"
        if value is not None and not math.isfinite(value):
            # e.g. an infinite chi-squared statistic: keep the answer defined
            value = float(np.sign(value)) * 1e300
        out.append(DriftResult(on, column, det, value, value if stat is None else stat, ref.count, cur.count, status))

    for det in detectors:
        if det in NUMERIC_ONLY and not numeric:
            continue
        if det == "psi":
            add(det, _stats.psi(rc, cc, zero_fill=zero_fill))
        elif det == "kl":
            add(det, _stats.kl_divergence(rc, cc, zero_fill=zero_fill))
        elif det == "js":
            add(det, _stats.js_distance(rc, cc, base=opt.js_base))
        elif det == "chi2":
            res = _stats.chi2_test(rc, cc, mode=opt.chi2_mode)
            add(det, res[1] if res else None, res[0] if res else None)
        elif det in ("ks", "ks_stat"):
            ks = _stats.ks_test(ref.sample, cur.sample)
            if ks is None:
                add(det, None)
            else:
                add(det, ks[1] if det == "ks" else ks[0], ks[0])
        elif det == "wasserstein":
            add(det, _stats.wasserstein(ref.sample, cur.sample, norm=opt.wasserstein_norm, ref_std=ref.std if ref.count else None))
        elif det == "null_share":
            # absolute change in the share of nulls: an all-null window is drift of its own kind
            total = cur.count + cur.nulls
            add(det, abs(cur.null_share - ref.null_share) if total else None)
        else:
            raise ValueError(f"unknown detector {det!r} (known: {', '.join(ALL_DETECTORS)})")
    return out


def compare_profiles(
    reference: ReferenceProfile,
    window: ReferenceProfile,
    *,
    columns: list[str] | None = None,
    detectors: tuple[str, ...] | list[str] = ALL_DETECTORS,
    options: DriftOptions | None = None,
    include_prediction: bool = True,
    include_target: bool = True,
) -> list[DriftResult]:
    """Compare every feature (or ``columns``), the prediction and the target of a window with the reference."""
    out: list[DriftResult] = []
    for name in columns if columns is not None else reference.feature_names:
        ref = reference.columns.get(name)
        cur = window.columns.get(name)
        if ref is None or cur is None:
            continue
        out += compare_columns(ref, cur, on="features", column=name, detectors=detectors, options=options)
    if include_prediction and reference.prediction is not None and window.prediction is not None:
        out += compare_columns(
            reference.prediction, window.prediction, on="prediction", column="prediction", detectors=detectors, options=options
        )
    if include_target and reference.target is not None and window.target is not None:
        out += compare_columns(reference.target, window.target, on="target", column="target", detectors=detectors, options=options)
    return out
