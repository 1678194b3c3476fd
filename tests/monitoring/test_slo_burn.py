"""Error budgets and multi-window burn rates on synthetic event series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from steward.monitoring import burn_rate, evaluate_slo, sli_events
from steward.spec import SloSpec

T_END = datetime(2024, 3, 1, tzinfo=UTC)


def _events(minutes: int, bad_from_minute: int | None, bad_every: int = 1) -> pl.DataFrame:
    """One event per minute for ``minutes`` minutes ending at T_END; bad after ``bad_from_minute`` (every ``bad_every``-th)."""
    ts = [T_END - timedelta(minutes=minutes - i) for i in range(minutes)]
    good = [not (bad_from_minute is not None and i >= bad_from_minute and i % bad_every == 0) for i in range(minutes)]
    return pl.DataFrame({"ts": ts, "good": good}).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


def test_burn_rate_formula() -> None:
    assert burn_rate(1, 1000, 0.999) == pytest.approx(1.0)
    assert burn_rate(144, 10000, 0.99) == pytest.approx(1.44)
    assert burn_rate(0, 0, 0.99) is None


def test_fast_burn_fires_when_both_windows_burn() -> None:
    slo = SloSpec(name="availability", objective=0.99)
    # 24h of traffic; the last 90 minutes fail completely: 1h and 5m windows burn at 100x
    ev = _events(24 * 60, 24 * 60 - 90)
    st = evaluate_slo(ev, slo, now=T_END)
    assert st.burn_rates["5m"] == pytest.approx(100.0)
    assert st.burn_rates["1h"] == pytest.approx(100.0)
    # windows are (now - span, now]: the event exactly 6h before now is outside
    assert st.burn_rates["6h"] == pytest.approx((90 / 359) / 0.01)
    assert st.burn_rates["30m"] == pytest.approx(100.0)
    assert st.firing == ["fast_burn", "slow_burn"]
    assert st.sli == pytest.approx(1 - 90 / 1440)
    assert st.error_budget_remaining == pytest.approx(1 - (90 / 1440) / 0.01)


def _expected_rate(ts: list[datetime], good: list[bool], span: timedelta, objective: float) -> float:
    inside = [g for t, g in zip(ts, good, strict=True) if T_END - span < t <= T_END]
    return (inside.count(False) / len(inside)) / (1 - objective)


def test_recovered_problem_stops_fast_burn_but_slow_burn_remembers() -> None:
    slo = SloSpec(name="availability", objective=0.99)
    # 30% errors from 6h ago until 10 minutes ago, then healthy
    minutes = 12 * 60
    ts = [T_END - timedelta(minutes=minutes - i) for i in range(minutes)]
    good = [not (minutes - 360 <= i < minutes - 10 and i % 10 < 3) for i in range(minutes)]
    ev = pl.DataFrame({"ts": ts, "good": good}).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    st = evaluate_slo(ev, slo, now=T_END)
    for w, span in {"5m": timedelta(minutes=5), "1h": timedelta(hours=1), "30m": timedelta(minutes=30), "6h": timedelta(hours=6)}.items():
        assert st.burn_rates[w] == pytest.approx(_expected_rate(ts, good, span, 0.99)), w
    assert st.burn_rates["5m"] == 0.0
    assert (st.burn_rates["1h"] or 0) > 14.4  # the long window still burns fast ...
    assert "fast_burn" not in st.firing  # ... but the short one has recovered, so no page
    assert st.firing == ["slow_burn"]


def test_latency_and_availability_events_from_the_log() -> None:
    log = pl.DataFrame({"ts": [T_END] * 4, "latency_ms": [10.0, 60.0, None, 49.9], "status": [200, 503, 200, 200]}).with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC"))
    )
    lat = sli_events(log, SloSpec(name="latency", objective=0.99, threshold_ms=50))
    assert lat.get_column("good").to_list() == [True, False, False, True]
    av = sli_events(log, SloSpec(name="availability", objective=0.999))
    assert av.get_column("good").to_list() == [True, False, True, True]
    empty = evaluate_slo(sli_events(log.head(0), SloSpec(name="latency", objective=0.99)), SloSpec(name="latency", objective=0.99))
    assert empty.sli is None and empty.firing == []
