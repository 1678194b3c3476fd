"""What every dashboard view shares: degrading instead of failing, and the colours of actions and outcomes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from steward.errors import StewardError

__all__ = ["ACTION_COLORS", "DRIFT_TARGETS", "OUTCOME_COLORS", "clip", "guard", "no_monitoring", "no_rows"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

ACTION_COLORS = {
    "alert": "#DC6803",
    "retrain": "#7B2CBF",
    "rollback": "#C11574",
    "shadow-then-promote": "#079455",
    "promote": "#079455",
    "abort": "#475467",
}
OUTCOME_COLORS = {"promoted": "#079455", "rolled_back": "#C11574", "champion_kept": "#475467", "aborted": "#475467"}
DRIFT_TARGETS = ("features", "prediction", "target")


def no_rows() -> list[dict[str, Any]]:
    """An empty section."""
    return []


def no_monitoring() -> dict[str, Any]:
    """An empty monitoring section."""
    return {"verdicts": [], "checks": [], "actions": []}


def guard(section: str, fn: Callable[[], T], empty: T) -> tuple[T, str | None]:
    """Run ``fn``; on any failure log it and return ``empty`` with a one-line reason (never a 500)."""
    try:
        return fn(), None
    except ImportError as exc:
        logger.info("dashboard %s: stage not installed (%s)", section, exc)
        return empty, f"the {section} stage is not available ({exc.name or exc})"
    except Exception as exc:
        if isinstance(exc, StewardError):  # an expected condition (no card yet, ...): its message says it all
            logger.info("dashboard %s: %s", section, exc)
            return empty, str(exc)
        logger.exception("dashboard %s failed", section)
        return empty, f"{section} could not be read: {type(exc).__name__}: {exc}"


def clip(text: str, n: int) -> str:
    """``text`` cut to ``n`` characters (with an ellipsis when cut)."""
    return text if len(text) <= n else text[: n - 1] + "…"
