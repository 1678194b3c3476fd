"""OpenTelemetry tracing for Steward: spans stored in ``ROOT/traces.db``, optionally exported over OTLP.

Each workspace gets its own :class:`TracerProvider` (not the process-global one,
so tests and several projects in one process stay apart) with a batch processor
writing to a small SQLite file that the dashboard reads with
:func:`recent_traces`. Set ``llm.gateway.tracing.otlp_endpoint`` to also ship
spans to a collector (off by default: the machine may be offline).

Usage::

    with start_span(ws, "llm.chat", {"llm.model": "chat-default"}) as span:
        span.set_attribute("llm.tokens_in", 12)
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["SqliteSpanExporter", "flush", "get_tracer", "recent_traces", "set_attributes", "start_span", "tracer_provider", "traces_path"]

logger = logging.getLogger(__name__)

_SCHEMA = """CREATE TABLE IF NOT EXISTS spans (
    span_id TEXT PRIMARY KEY,
    trace_id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    status TEXT NOT NULL,
    attributes TEXT NOT NULL
)"""

_providers: dict[str, TracerProvider] = {}
_providers_lock = threading.Lock()


class SqliteSpanExporter(SpanExporter):
    """Write finished spans into a SQLite file (one row per span, attributes as JSON).

    Args:
        path: The database file, e.g. ``ROOT/traces.db``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)
        self._conn.execute("CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ns)")
        self._conn.commit()
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Insert a batch of spans."""
        rows = []
        for s in spans:
            ctx = s.context
            if ctx is None:
                continue
            start, end = s.start_time or 0, s.end_time or 0
            rows.append(
                (
                    format(ctx.span_id, "016x"),
                    format(ctx.trace_id, "032x"),
                    format(s.parent.span_id, "016x") if s.parent else None,
                    s.name,
                    start,
                    end,
                    (end - start) / 1e6,
                    s.status.status_code.name,
                    orjson.dumps(dict(s.attributes or {}), default=str).decode(),  # orjson: several times faster
                )
            )
        with self._lock:
            if self._closed:
                return SpanExportResult.FAILURE
            try:
                self._conn.executemany("INSERT OR REPLACE INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._conn.commit()
            except sqlite3.Error:
                logger.exception("could not store %d spans in %s", len(rows), self.path)
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Close the database."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing buffered here: every export commits."""
        return True


def traces_path(ws: Workspace) -> Path:
    """Where a workspace's spans are stored."""
    return ws.root / "traces.db"


def tracer_provider(ws: Workspace) -> TracerProvider:
    """The workspace's tracer provider (created on first use, then shared)."""
    key = str(traces_path(ws))
    provider = _providers.get(key)
    if provider is not None:
        return provider
    with _providers_lock:
        provider = _providers.get(key)
        if provider is None:
            provider = TracerProvider(resource=Resource.create({"service.name": "steward", "steward.project": ws.spec.project}))
            provider.add_span_processor(BatchSpanProcessor(SqliteSpanExporter(key), schedule_delay_millis=500))
            endpoint = ws.spec.llm.gateway.tracing.otlp_endpoint
            if endpoint:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
            _providers[key] = provider
    return provider


def get_tracer(ws: Workspace | None = None, name: str = "steward") -> trace.Tracer:
    """A tracer: the workspace's (stored locally) or, without a workspace, the process-global one."""
    if ws is None:
        return trace.get_tracer(name)
    return tracer_provider(ws).get_tracer(name)


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    # OpenTelemetry attributes must be primitives or sequences of them; drop None.
    out: dict[str, Any] = {}
    for k, v in attributes.items():
        if v is None:
            continue
        if isinstance(v, str | bool | int | float):
            out[k] = v
        elif isinstance(v, list | tuple):
            out[k] = [x if isinstance(x, str | bool | int | float) else str(x) for x in v]
        else:
            out[k] = str(v)
    return out


@contextmanager
def start_span(ws: Workspace | None, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[trace.Span]:
    """Open a span (a child of the current one, if any); exceptions are recorded on it."""
    with get_tracer(ws).start_as_current_span(name, attributes=_clean(attributes or {})) as span:
        yield span


def set_attributes(span: trace.Span, attributes: Mapping[str, Any]) -> None:
    """Set several attributes, dropping None values."""
    span.set_attributes(_clean(attributes))


def flush(ws: Workspace, timeout_ms: int = 5000) -> None:
    """Export every finished span of the workspace now (tests, shutdown)."""
    key = str(traces_path(ws))
    provider = _providers.get(key)
    if provider is not None:
        provider.force_flush(timeout_ms)


def recent_traces(ws: Workspace, limit: int = 50, *, name: str | None = None) -> list[dict[str, Any]]:
    """The most recent spans of a workspace, newest first, attributes decoded.

    Args:
        ws: The workspace.
        limit: How many spans.
        name: Only spans with this name (e.g. ``"llm.chat"``).
    """
    path = traces_path(ws)
    if not path.exists():
        return []
    conn = sqlite3.connect(str(path), timeout=30.0)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(_SCHEMA)
        if name is None:
            rows = conn.execute("SELECT * FROM spans ORDER BY start_ns DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = conn.execute("SELECT * FROM spans WHERE name = ? ORDER BY start_ns DESC LIMIT ?", (name, limit)).fetchall()
    finally:
        conn.close()
    out = []
    for r in rows:
        d = dict(r)
        d["attributes"] = json.loads(d["attributes"])
        out.append(d)
    return out
