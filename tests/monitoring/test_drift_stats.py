"""Each drift statistic against a reference computation (scipy), plus every edge case."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from steward.monitoring import DriftOptions, build_reference_profile, compare_columns, compare_profiles
from steward.monitoring._stats import chi2_test, fill_zeros, js_distance, kl_divergence, ks_test, psi, wasserstein

RNG = np.random.default_rng(42)


def test_psi_matches_textbook_formula() -> None:
    r = np.array([10, 20, 30, 40])
    c = np.array([25, 25, 25, 25])
    rp, cp = r / r.sum(), c / c.sum()
    expected = float(np.sum((rp - cp) * np.log(rp / cp)))
    assert psi(r, c) == pytest.approx(expected, rel=1e-12)
    assert psi(r, r) == 0.0


def test_psi_and_kl_smooth_empty_bins_with_epsilon() -> None:
    r = np.array([0, 50, 50])
    c = np.array([10, 45, 45])
    rp = np.array([1e-4, 0.5, 0.5])
    cp = c / c.sum()
    assert psi(r, c) == pytest.approx(float(np.sum((rp - cp) * np.log(rp / cp))), rel=1e-12)
    assert kl_divergence(r, c) == pytest.approx(float(stats.entropy(rp, cp)), rel=1e-12)
    assert math.isfinite(psi(c, r) or math.nan)
    # Evidently's rule: the smallest non-zero share / 1e6 when it is <= 1e-4
    tiny = fill_zeros(np.array([0.0, 0.00005, 0.99995]), "evidently")
    assert tiny[0] == pytest.approx(0.00005 / 1e6)


def test_kl_matches_scipy_entropy() -> None:
    r = RNG.integers(1, 100, size=12)
    c = RNG.integers(1, 100, size=12)
    assert kl_divergence(r, c) == pytest.approx(float(stats.entropy(r, c)), rel=1e-10)


@pytest.mark.parametrize("base", [2.0, math.e])
def test_js_matches_scipy(base: float) -> None:
    r = RNG.integers(0, 50, size=8)
    c = RNG.integers(0, 50, size=8)
    assert js_distance(r, c, base=base) == pytest.approx(float(jensenshannon(r, c, base=base)), rel=1e-10)
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert js_distance(r, r) == pytest.approx(0.0, abs=1e-12)


def test_ks_matches_scipy() -> None:
    a = RNG.normal(size=700)
    b = RNG.normal(0.2, 1.1, size=500)
    ref = stats.ks_2samp(a, b)
    stat, p = ks_test(a, b) or (math.nan, math.nan)
    assert stat == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)


@pytest.mark.parametrize(("n", "m"), [(1, 1), (3, 7), (500, 333), (1000, 1000), (64, 4096)])
def test_wasserstein_exact_against_scipy(n: int, m: int) -> None:
    a = RNG.normal(size=n)
    b = RNG.exponential(2.0, size=m)
    assert wasserstein(a, b, norm="none") == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)
    assert wasserstein(a, b, norm="std") == pytest.approx(
        stats.wasserstein_distance(a, b) / np.std(a) if np.std(a) > 0 else stats.wasserstein_distance(a, b)
    )
    assert wasserstein(a, b, norm="evidently") == pytest.approx(stats.wasserstein_distance(a, b) / max(np.std(a), 0.001))


def test_wasserstein_with_ties_and_iqr() -> None:
    a = RNG.integers(0, 4, size=300).astype(float)
    b = RNG.integers(1, 6, size=211).astype(float)
    raw = stats.wasserstein_distance(a, b)
    assert wasserstein(a, b, norm="none") == pytest.approx(raw, rel=1e-9)
    q1, q3 = np.quantile(a, [0.25, 0.75])
    assert wasserstein(a, b, norm="iqr") == pytest.approx(raw / (q3 - q1))


def test_chi2_matches_scipy() -> None:
    r = np.array([30, 50, 20, 0])
    c = np.array([20, 40, 35, 5])
    stat, p = chi2_test(r, c) or (0.0, 0.0)
    ref = stats.chi2_contingency(np.vstack([r[:], c[:]]), correction=False)
    assert stat == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    r2, c2 = np.array([30, 50, 20]), np.array([20, 40, 40])
    _s, pg = chi2_test(r2, c2, mode="goodness") or (0.0, 0.0)
    assert pg == pytest.approx(stats.chisquare(c2, r2 * c2.sum() / r2.sum()).pvalue)
    # a category the reference never saw: goodness-of-fit is certain drift, not a crash
    assert (chi2_test([10, 0], [5, 5], mode="goodness") or (0, 1))[1] == 0.0
    assert chi2_test([5, 0], [7, 0]) == (0.0, 1.0)


def test_empty_side_gives_none_not_nan() -> None:
    assert psi([0, 0], [1, 2]) is None
    assert kl_divergence([1, 2], [0, 0]) is None
    assert js_distance([], []) is None
    assert ks_test([], [1.0]) is None
    assert wasserstein([1.0], []) is None
    assert chi2_test([0, 0], [1, 1]) is None


def _frame(values: dict[str, list[object]]) -> pl.DataFrame:
    return pl.DataFrame(values, strict=False)


def _window(reference_frame: pl.DataFrame, window_frame: pl.DataFrame, cats: list[str]) -> tuple[object, object]:
    from steward.monitoring import WindowProfiler

    ref = build_reference_profile(reference_frame, reference_frame.columns, cats)
    prof = WindowProfiler(ref)
    prof.update(window_frame)
    return ref, prof.profile()


def _by_detector(results: list[object]) -> dict[str, object]:
    return {r.detector: r for r in results}  # type: ignore[attr-defined]


def test_constant_column_gives_defined_answers() -> None:
    ref, win = _window(_frame({"x": [5.0] * 200}), _frame({"x": [5.0] * 50}), [])
    same = _by_detector(compare_profiles(ref, win))  # type: ignore[arg-type]
    assert same["psi"].value == pytest.approx(0.0)  # type: ignore[attr-defined]
    assert same["wasserstein"].value == 0.0  # type: ignore[attr-defined]
    assert same["ks"].value == pytest.approx(1.0)  # type: ignore[attr-defined]
    ref, win = _window(_frame({"x": [5.0] * 200}), _frame({"x": [7.0] * 50}), [])
    moved = _by_detector(compare_profiles(ref, win))  # type: ignore[arg-type]
    for det in ("psi", "kl", "js", "wasserstein", "ks_stat"):
        v = moved[det].value  # type: ignore[attr-defined]
        assert v is not None and math.isfinite(v) and v > 0.5, det
    # a constant reference has std 0: the distance is reported unscaled
    assert moved["wasserstein"].value == pytest.approx(2.0)  # type: ignore[attr-defined]


def test_all_null_window_is_no_data_and_null_share_jumps() -> None:
    ref, win = _window(
        _frame({"x": RNG.normal(size=300).tolist(), "c": ["a", "b", "c"] * 100}), _frame({"x": [None] * 40, "c": [None] * 40}), ["c"]
    )
    res = compare_profiles(ref, win)  # type: ignore[arg-type]
    for r in res:
        if r.detector == "null_share":
            assert r.value == pytest.approx(1.0)
        else:
            assert r.status == "no_data" and r.value is None, r
    assert not any(isinstance(r.value, float) and math.isnan(r.value) for r in res)


def test_unseen_categories_and_tiny_window() -> None:
    ref, win = _window(_frame({"c": ["a", "b"] * 100}), _frame({"c": ["z"]}), ["c"])
    res = _by_detector(compare_profiles(ref, win))  # type: ignore[arg-type]
    assert res["js"].value == pytest.approx(1.0)  # type: ignore[attr-defined]
    assert math.isfinite(res["psi"].value) and res["psi"].value > 1  # type: ignore[attr-defined]
    assert res["chi2"].value is not None and res["chi2"].value < 0.01  # type: ignore[attr-defined]
    assert res["psi"].n_window == 1  # type: ignore[attr-defined]
    ref, win = _window(_frame({"x": RNG.normal(size=300).tolist()}), _frame({"x": [0.1]}), [])
    tiny = compare_profiles(ref, win)  # type: ignore[arg-type]
    assert all(r.value is not None and math.isfinite(r.value) for r in tiny)


def test_empty_reference_bin_counts_stay_finite() -> None:
    from steward.monitoring import ColumnProfile

    ref = ColumnProfile(kind="numeric", count=100, cuts=np.array([1.0, 2.0]), counts=np.array([50, 0, 50]), sample=np.linspace(0, 3, 100))
    cur = ColumnProfile(kind="numeric", count=30, cuts=np.array([1.0, 2.0]), counts=np.array([10, 10, 10]), sample=np.linspace(0, 3, 30))
    res = _by_detector(compare_columns(ref, cur, on="features", column="x"))
    for det in ("psi", "kl", "js", "chi2"):
        assert res[det].value is not None and math.isfinite(res[det].value), det  # type: ignore[attr-defined]


def test_quantile_bins_detect_a_shift_and_not_noise() -> None:
    base = RNG.normal(size=5000)
    ref, same = _window(_frame({"x": base.tolist()}), _frame({"x": RNG.normal(size=3000).tolist()}), [])
    _r2, shifted = _window(_frame({"x": base.tolist()}), _frame({"x": RNG.normal(0.8, 1, size=3000).tolist()}), [])
    p_same = _by_detector(compare_profiles(ref, same))["psi"].value  # type: ignore[arg-type,attr-defined]
    p_shift = _by_detector(compare_profiles(ref, shifted))["psi"].value  # type: ignore[arg-type,attr-defined]
    assert p_same < 0.02 < 0.2 < p_shift
    assert len(ref.columns["x"].cuts) == 9  # type: ignore[attr-defined]


def test_evidently_options_reproduce_its_binning() -> None:
    a = RNG.normal(size=2000)
    b = RNG.normal(0.3, 1.2, size=1500)
    ref, win = _window(_frame({"x": a.tolist()}), _frame({"x": b.tolist()}), [])
    res = _by_detector(compare_profiles(ref, win, options=DriftOptions.evidently()))  # type: ignore[arg-type]
    edges = np.histogram_bin_edges(np.concatenate([a, b]), bins="sturges")
    rp = fill_zeros(np.histogram(a, edges)[0] / a.size, "evidently")
    cp = fill_zeros(np.histogram(b, edges)[0] / b.size, "evidently")
    assert res["psi"].value == pytest.approx(float(np.sum((rp - cp) * np.log(rp / cp))), rel=1e-9)  # type: ignore[attr-defined]
    rj, cj = np.histogram(a, edges)[0] / a.size, np.histogram(b, edges)[0] / b.size
    assert res["js"].value == pytest.approx(float(jensenshannon(rj, cj)), rel=1e-9)  # type: ignore[attr-defined]
    assert res["wasserstein"].value == pytest.approx(stats.wasserstein_distance(a, b) / max(np.std(a), 0.001), rel=1e-9)  # type: ignore[attr-defined]
