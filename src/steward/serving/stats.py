"""Sliding windows of per-variant request outcomes, summarised for the rollout rules."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from steward.serving.router import VariantStats

__all__ = ["VariantWindow"]


class VariantWindow:
    """The last ``window_s`` seconds of one variant's requests (bounded to ``max_samples``).

    Args:
        window_s: Window length.
        max_samples: Cap on remembered requests (oldest dropped first), so memory stays bounded.
        clock: Monotonic clock (tests pass a fake).
    """

    def __init__(self, window_s: float = 300.0, max_samples: int = 50_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, float, bool, float]] = deque(maxlen=max_samples)
        self._disagree: deque[tuple[float, bool]] = deque(maxlen=max_samples)
        self._lock = threading.Lock()

    def record(self, latency_ms: float, error: bool, prediction: float = math.nan) -> None:
        """Remember one request."""
        with self._lock:
            self._samples.append((self._clock(), latency_ms, error, prediction))

    def record_comparison(self, disagreed: bool) -> None:
        """Remember one shadow comparison."""
        with self._lock:
            self._disagree.append((self._clock(), disagreed))

    def reset(self) -> None:
        """Forget everything (a new step starts a new window)."""
        with self._lock:
            self._samples.clear()
            self._disagree.clear()

    def stats(self) -> VariantStats:
        """Summary of the samples still inside the window."""
        cutoff = self._clock() - self.window_s
        with self._lock:
            while self._samples and self._samples[0][0] < cutoff:
                self._samples.popleft()
            while self._disagree and self._disagree[0][0] < cutoff:
                self._disagree.popleft()
            samples = list(self._samples)
            disagree = [d for _, d in self._disagree]
        return VariantStats.from_samples([s[1] for s in samples], sum(1 for s in samples if s[2]), [s[3] for s in samples], disagree)
