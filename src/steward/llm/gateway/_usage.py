"""Usage records (one row per gateway request in the metadata store) and the cost report built from them."""

from __future__ import annotations

import atexit
import calendar
import logging
import threading
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from steward._primitives import iso_utc
from steward.backends.base import MetadataStore
from steward.errors import BackendUnavailable

__all__ = ["CostReport", "UsageRecorder", "cost_report", "daily_spend", "spend_per_day"]

logger = logging.getLogger(__name__)

_INSERT = (
    "INSERT INTO llm_usage (request_id, created_at, day, key_name, team, model, provider, provider_model, prompt_tokens, "
    "completion_tokens, cost_usd, cache, status, latency_ms, prompt_version) VALUES "
)
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# Rows per multi-row INSERT: 64 x 15 parameters stays under SQLite's historical limit of 999 per statement.
_CHUNK = 64
# Rows kept while the metadata store is down, waiting for it to come back (about 10 minutes at 200 requests a second).
_MAX_PENDING = 100_000
_INSERTS = {n: _INSERT + ", ".join([_ROW] * n) for n in (1, _CHUNK)}


def _insert_sql(n: int) -> str:
    sql = _INSERTS.get(n)
    if sql is None:
        sql = _INSERT + ", ".join([_ROW] * n)
    return sql


class UsageRecorder:
    """Buffer usage rows and write them in batches from a background thread (off the request's hot path).

    Args:
        store: The metadata store (table ``llm_usage``).
        interval_s: How often the buffer is written.
    """

    def __init__(self, store: MetadataStore, interval_s: float = 0.5) -> None:
        self.store = store
        self.interval_s = interval_s
        self._rows: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Write what is buffered when the server process exits normally.
        ref = weakref.ref(self)
        atexit.register(_flush_at_exit, ref)

    def record(self, row: dict[str, Any]) -> None:
        """Queue one request's usage (written within ``interval_s``)."""
        now = datetime.now(UTC)
        values = (
            row["request_id"],
            iso_utc(now),
            now.strftime("%Y-%m-%d"),
            row["key_name"],
            row.get("team"),
            row["model"],
            row.get("provider"),
            row.get("provider_model"),
            int(row.get("prompt_tokens", 0)),
            int(row.get("completion_tokens", 0)),
            float(row.get("cost_usd", 0.0)),
            row.get("cache"),
            row.get("status", "ok"),
            row.get("latency_ms"),
            row.get("prompt_version"),
        )
        with self._lock:
            self._rows.append(values)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="steward-llm-usage", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def flush(self) -> int:
        """Write every queued row now; return how many."""
        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                # Multi-row INSERTs (portable SQL): one statement per 64 rows, not one per request.
                with self.store.transaction():
                    for start in range(0, len(rows), _CHUNK):
                        chunk = rows[start : start + _CHUNK]
                        self.store.execute(_insert_sql(len(chunk)), [v for values in chunk for v in values])
            except BackendUnavailable as exc:
                # the transaction wrote none of them: keep the rows, first in line, for the next flush (bounded)
                with self._lock:
                    self._rows[:0] = rows
                    lost = len(self._rows) - _MAX_PENDING
                    if lost > 0:
                        del self._rows[:lost]
                logger.warning("could not write %d gateway usage rows yet (kept for the next flush): %s", len(rows), exc.message)
                if lost > 0:
                    logger.error("dropped the %d oldest gateway usage rows: the metadata store has been down too long", lost)
                return 0
            except Exception:
                logger.exception("could not write %d gateway usage rows", len(rows))
                return 0
            return len(rows)

    def close(self) -> None:
        """Stop the writer and write what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()


def _flush_at_exit(ref: weakref.ref[UsageRecorder]) -> None:
    recorder = ref()
    if recorder is not None and recorder._rows:
        try:
            recorder.flush()
        except Exception:  # the store may already be closed at exit
            logger.debug("could not flush gateway usage at exit", exc_info=True)


@dataclass
class CostReport:
    """Spend over a window, by key, model and day, plus a projection for the current month.

    Attributes:
        since: First day of the window (``YYYY-MM-DD``).
        total_usd: Spend over the window.
        requests: Requests over the window.
        by_key / by_model / by_day: Rows with ``name``, ``requests``, ``prompt_tokens``, ``completion_tokens``, ``cost_usd``.
        month_to_date_usd: Spend since the first of the current month.
        projected_month_usd: Month-to-date spend extrapolated to the whole month.
    """

    since: str
    total_usd: float
    requests: int
    by_key: list[dict[str, Any]]
    by_model: list[dict[str, Any]]
    by_day: list[dict[str, Any]]
    month_to_date_usd: float
    projected_month_usd: float

    def to_dict(self) -> dict[str, Any]:
        """As plain data (for ``--json`` and the API)."""
        return dict(self.__dict__)


def _group(store: MetadataStore, column: str, since: str) -> list[dict[str, Any]]:
    rows = store.fetchall(
        f"SELECT {column} AS name, COUNT(*) AS requests, SUM(prompt_tokens) AS prompt_tokens, "
        f"SUM(completion_tokens) AS completion_tokens, SUM(cost_usd) AS cost_usd FROM llm_usage "
        f"WHERE day >= ? GROUP BY {column} ORDER BY {column}",
        (since,),
    )
    return [
        {
            "name": r["name"],
            "requests": int(r["requests"]),
            "prompt_tokens": int(r["prompt_tokens"] or 0),
            "completion_tokens": int(r["completion_tokens"] or 0),
            "cost_usd": float(r["cost_usd"] or 0.0),
        }
        for r in rows
    ]


_SPEND_BY = frozenset({"key_name", "model", "team", "provider"})


def spend_per_day(store: MetadataStore, by: str, since: str) -> list[dict[str, Any]]:
    """Spend per day and per ``by`` (``key_name``, ``model``, ``team`` or ``provider``) since ``since`` (``YYYY-MM-DD``).

    Returns:
        Rows ``{"day", "name", "cost_usd"}`` ordered by day.

    Raises:
        ValueError: ``by`` is not one of those columns.
    """
    if by not in _SPEND_BY:
        raise ValueError(f"cannot group LLM spend by {by!r}")
    rows = store.fetchall(
        f"SELECT day, {by} AS name, SUM(cost_usd) AS cost FROM llm_usage WHERE day >= ? GROUP BY day, {by} ORDER BY day", (since,)
    )
    return [{"day": str(r["day"]), "name": str(r["name"]), "cost_usd": float(r["cost"] or 0.0)} for r in rows]


def daily_spend(store: MetadataStore, since: str) -> list[dict[str, Any]]:
    """Total spend per day since ``since`` (``YYYY-MM-DD``): rows ``{"day", "cost_usd"}`` ordered by day."""
    rows = store.fetchall("SELECT day, SUM(cost_usd) AS cost FROM llm_usage WHERE day >= ? GROUP BY day ORDER BY day", (since,))
    return [{"day": str(r["day"]), "cost_usd": float(r["cost"] or 0.0)} for r in rows]


def cost_report(store: MetadataStore, *, days: int = 30, now: datetime | None = None) -> CostReport:
    """Spend by key, model and day over the last ``days`` days, and a projection for this month.

    The projection is month-to-date spend divided by the days elapsed (today
    counted) times the days in the month.
    """
    now = now or datetime.now(UTC)
    since = (now - timedelta(days=days - 1)).strftime("%Y-%m-%d")
    by_key = _group(store, "key_name", since)
    by_model = _group(store, "model", since)
    by_day = _group(store, "day", since)
    month_start = now.strftime("%Y-%m-01")
    row = store.fetchone("SELECT SUM(cost_usd) AS c FROM llm_usage WHERE day >= ?", (month_start,))
    mtd = float(row["c"] or 0.0) if row else 0.0
    days_in_month = calendar.monthrange(now.year, now.month)[1]
    return CostReport(
        since=since,
        total_usd=sum(r["cost_usd"] for r in by_day),
        requests=sum(r["requests"] for r in by_day),
        by_key=by_key,
        by_model=by_model,
        by_day=by_day,
        month_to_date_usd=mtd,
        projected_month_usd=mtd / now.day * days_in_month,
    )
