"""The promotion gate (``model.gate:``): what a challenger must prove before the registry moves ``champion``."""

from __future__ import annotations

from steward.spec._base import _Strict

__all__ = ["GateSpec"]


class GateSpec(_Strict):
    """Non-inferiority margins (challenger vs champion) and absolute thresholds (first model)."""

    margin: float = 0.005
    slice_margin: float = 0.01
    fairness_margin: float = 0.01
    latency_p99_ms: float | None = 50.0
    latency_margin: float = 1.5
    latency_slack_ms: float = 1.0
    min_metric: float | None = None
    min_slice_metric: float | None = None
    min_slice_size: int = 50
    batch_size: int = 1000
    latency_repeats: int = 30
