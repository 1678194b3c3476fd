"""Drift statistics on counts and samples, with defined answers for every edge case.

Every function returns plain floats (never NaN): ``None`` means "no answer" (an empty
side), which callers report as ``no_data`` instead of a number.

Conventions (textbook unless an option says otherwise):

* **PSI** = sum((r - c) * ln(r / c)) over bins, on proportions. Empty bins are smoothed
  by replacing a zero proportion with ``1e-4`` (``zero_fill="epsilon"``, no renormalisation);
  ``zero_fill="evidently"`` uses Evidently's rule (``min(nonzero) / 1e6`` when the smallest
  non-zero proportion is <= 1e-4, else ``1e-4``).
* **KL divergence** = KL(reference || window), natural log, same zero smoothing as PSI
  (then normalised, as :func:`scipy.stats.entropy` does).
* **Jensen–Shannon distance** = sqrt of the JS divergence; base 2 by default (bounded in
  [0, 1]); Evidently uses the natural log (``base=math.e``).
* **Wasserstein** = exact W1 between the two empirical distributions, divided by a scale:
  ``std`` (reference population std; raw W1 for a constant reference), ``evidently``
  (``max(std, 0.001)``), ``iqr`` (reference interquartile range, falling back to std, then 1),
  or ``none``.
* **KS** = two-sample Kolmogorov–Smirnov statistic and p-value (scipy's ``ks_2samp``, method auto).
* **Chi-squared** = test of homogeneity on the 2×k table of counts (``chi2_contingency`` without
  Yates' correction); ``goodness`` mode is Evidently's goodness-of-fit of window counts against
  reference proportions.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "EPSILON",
    "chi2_test",
    "fill_zeros",
    "js_distance",
    "kl_divergence",
    "ks_test",
    "psi",
    "sturges_edges",
    "wasserstein",
    "wasserstein_distance_sorted",
]

logger = logging.getLogger(__name__)

EPSILON = 1e-4
ZeroFill = Literal["epsilon", "evidently"]
WassersteinNorm = Literal["std", "evidently", "iqr", "none"]


def _proportions(counts: ArrayLike) -> NDArray[np.float64] | None:
    c = np.asarray(counts, dtype=np.float64)
    total = float(c.sum())
    if total <= 0:
        return None
    return c / total


def fill_zeros(p: NDArray[np.float64], mode: ZeroFill = "epsilon") -> NDArray[np.float64]:
    """Replace zero proportions so logarithms stay finite (see the module docstring)."""
    out = p.astype(np.float64, copy=True)
    zero = out == 0
    if not zero.any():
        return out
    nonzero = out[~zero]
    if mode == "evidently" and nonzero.size:
        small = float(nonzero.min())
        out[zero] = small / 1e6 if small <= EPSILON else EPSILON
    else:
        out[zero] = EPSILON
    return out


def _pair(ref_counts: ArrayLike, cur_counts: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    r, c = _proportions(ref_counts), _proportions(cur_counts)
    if r is None or c is None:
        return None
    if r.shape != c.shape:
        raise ValueError(f"bin counts differ in length: {r.shape} vs {c.shape}")
    return r, c


def psi(ref_counts: ArrayLike, cur_counts: ArrayLike, *, zero_fill: ZeroFill = "epsilon") -> float | None:
    """Population stability index of two aligned count vectors (``None`` when a side is empty)."""
    pair = _pair(ref_counts, cur_counts)
    if pair is None:
        return None
    r, c = fill_zeros(pair[0], zero_fill), fill_zeros(pair[1], zero_fill)
    return float(np.sum((r - c) * np.log(r / c)))


def kl_divergence(ref_counts: ArrayLike, cur_counts: ArrayLike, *, zero_fill: ZeroFill = "epsilon") -> float | None:
    """KL(reference || window) in nats, with zero smoothing, normalised like ``scipy.stats.entropy``."""
    pair = _pair(ref_counts, cur_counts)
    if pair is None:
        return None
    r, c = fill_zeros(pair[0], zero_fill), fill_zeros(pair[1], zero_fill)
    r, c = r / r.sum(), c / c.sum()
    return float(np.sum(r * np.log(r / c)))


def js_distance(ref_counts: ArrayLike, cur_counts: ArrayLike, *, base: float = 2.0) -> float | None:
    """Jensen–Shannon distance (square root of the divergence); 0 for identical, 1 (base 2) for disjoint."""
    pair = _pair(ref_counts, cur_counts)
    if pair is None:
        return None
    p, q = pair
    m = (p + q) / 2.0

    def _kl(a: NDArray[np.float64]) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / m[mask])))

    div = (_kl(p) + _kl(q)) / 2.0 / math.log(base)
    return float(math.sqrt(max(div, 0.0)))


def chi2_test(
    ref_counts: ArrayLike, cur_counts: ArrayLike, *, mode: Literal["homogeneity", "goodness"] = "homogeneity"
) -> tuple[float, float] | None:
    """Chi-squared statistic and p-value (``None`` when a side is empty).

    Categories empty on both sides are dropped; one remaining category means the
    samples cannot differ (statistic 0, p-value 1). In ``goodness`` mode a category
    the reference never saw (expected 0, observed > 0) gives p-value 0.
    """
    from scipy import stats

    r = np.asarray(ref_counts, dtype=np.float64)
    c = np.asarray(cur_counts, dtype=np.float64)
    if r.sum() <= 0 or c.sum() <= 0:
        return None
    keep = (r + c) > 0
    r, c = r[keep], c[keep]
    if r.size < 2:
        return 0.0, 1.0
    if mode == "goodness":
        expected = r * (c.sum() / r.sum())
        if np.any((expected == 0) & (c > 0)):
            return float(np.sum(np.where(expected > 0, (c - expected) ** 2 / np.where(expected > 0, expected, 1.0), 0.0))), 0.0
        res = stats.chisquare(c[expected > 0], expected[expected > 0])
        return float(res.statistic), float(res.pvalue)
    stat, p, _dof, _exp = stats.chi2_contingency(np.vstack([r, c]), correction=False)
    return float(stat), float(p)


def ks_test(ref: ArrayLike, cur: ArrayLike) -> tuple[float, float] | None:
    """Two-sample KS statistic and p-value (scipy, method auto); ``None`` when a side is empty."""
    from scipy import stats

    a = np.asarray(ref, dtype=np.float64)
    b = np.asarray(cur, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return None
    res = stats.ks_2samp(a, b)
    return float(res.statistic), float(res.pvalue)


def wasserstein_distance_sorted(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Exact W1 between two *sorted* samples in O(n + m), without sorting their union.

    W1 = ∫ |F⁻¹(t) - G⁻¹(t)| dt. The breakpoints of the two quantile functions are
    k/n and l/m; in units of 1/(n·m) they are k·m and l·n, whose merged order is known
    in closed form, so each segment's width and the two quantiles on it are computed
    by integer arithmetic.
    """
    n, m = a.size, b.size
    if n == m:
        # equal sizes: the quantile functions share every breakpoint
        return float(np.mean(np.abs(a - b)))
    k = np.arange(1, n + 1, dtype=np.int64)
    ll = np.arange(1, m + 1, dtype=np.int64)
    grid = np.empty(n + m, dtype=np.int64)
    # ties put the a-breakpoint first; equal breakpoints give zero-width segments either way
    grid[(k - 1) + (k * m - 1) // n] = k * m
    grid[(ll - 1) + (ll * n) // m] = ll * n
    widths = np.diff(grid, prepend=0)
    ia = -(-grid // m) - 1  # ceil(g / m) - 1
    ib = -(-grid // n) - 1
    return float(np.dot(widths.astype(np.float64), np.abs(a[ia] - b[ib])) / (float(n) * float(m)))


def _sorted(x: NDArray[np.float64]) -> NDArray[np.float64]:
    # profiles often hold already-sorted values; checking is much cheaper than sorting
    return x if x.size < 2 or bool(np.all(x[1:] >= x[:-1])) else np.sort(x)


def _scale(ref: NDArray[np.float64], norm: WassersteinNorm, ref_std: float | None) -> float:
    if norm == "none":
        return 1.0
    std = float(np.std(ref)) if ref_std is None else ref_std
    if norm == "evidently":
        return max(std, 0.001)
    if norm == "iqr":
        q1, q3 = np.quantile(ref, [0.25, 0.75]) if ref.size else (0.0, 0.0)
        iqr = float(q3 - q1)
        if iqr > 0:
            return iqr
    return std if std > 0 else 1.0


def wasserstein(
    ref: ArrayLike,
    cur: ArrayLike,
    *,
    norm: WassersteinNorm = "std",
    ref_std: float | None = None,
    assume_sorted: bool = False,
) -> float | None:
    """Normalised Wasserstein-1 distance (see the module docstring for the norms); ``None`` when a side is empty.

    Args:
        ref_std: The reference standard deviation when known from a full profile
            (``ref`` may be a bounded sample of it).
        assume_sorted: Skip sorting (both inputs already ascending).
    """
    a = np.asarray(ref, dtype=np.float64)
    b = np.asarray(cur, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return None
    if not assume_sorted:
        a, b = _sorted(a), _sorted(b)
    return wasserstein_distance_sorted(a, b) / _scale(a, norm, ref_std)


def sturges_edges(ref: NDArray[np.float64], cur: NDArray[np.float64]) -> NDArray[np.float64]:
    """Evidently's numeric binning: Sturges' rule over both samples together."""
    both = np.concatenate([ref, cur])
    return np.histogram_bin_edges(both, bins="sturges")
