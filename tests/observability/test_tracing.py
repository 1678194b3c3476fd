"""Tracing: spans stored in ROOT/traces.db through the OpenTelemetry SDK, read back for the dashboard."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward.observability.tracing import SqliteSpanExporter, flush, recent_traces, start_span, traces_path
from steward.spec import load_spec
from steward.workspace import Workspace


def test_spans_are_stored_with_parents_attributes_and_errors(project_dir: Path) -> None:
    ws = Workspace(load_spec(project_dir))
    with start_span(ws, "rag.answer", {"rag.chunk_ids": ["c1", "c2"], "skip": None, "obj": {"a": 1}}) as outer:
        with start_span(ws, "llm.chat", {"llm.model": "m", "llm.tokens_in": 3}):
            pass
        outer.set_attribute("guardrails.verdict", "pass")
    with pytest.raises(RuntimeError), start_span(ws, "llm.chat", {"llm.model": "boom"}):
        raise RuntimeError("upstream down")
    flush(ws)
    assert traces_path(ws).exists()
    spans = recent_traces(ws, 10)
    assert [s["name"] for s in spans] == ["llm.chat", "llm.chat", "rag.answer"]  # newest first, by start time
    chats = recent_traces(ws, 10, name="llm.chat")
    assert {s["attributes"]["llm.model"] for s in chats} == {"m", "boom"}
    failed = next(s for s in chats if s["attributes"]["llm.model"] == "boom")
    assert failed["status"] == "ERROR"
    parent = next(s for s in spans if s["name"] == "rag.answer")
    child = next(s for s in chats if s["attributes"]["llm.model"] == "m")
    assert child["parent_id"] == parent["span_id"] and child["trace_id"] == parent["trace_id"]
    assert parent["attributes"]["rag.chunk_ids"] == ["c1", "c2"] and parent["attributes"]["guardrails.verdict"] == "pass"
    assert "skip" not in parent["attributes"] and parent["attributes"]["obj"] == "{'a': 1}"
    assert parent["duration_ms"] >= child["duration_ms"] >= 0
    assert recent_traces(ws, 1)[0]["start_ns"] >= recent_traces(ws, 3)[-1]["start_ns"]


def test_exporter_after_shutdown_reports_failure(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult

    exp = SqliteSpanExporter(tmp_path / "t.db")
    assert exp.export([]) == SpanExportResult.SUCCESS
    exp.shutdown()
    assert exp.export([]) == SpanExportResult.FAILURE


def test_no_traces_yet(project_dir: Path) -> None:
    assert recent_traces(Workspace(load_spec(project_dir)), 5) == []


def test_spans_are_exported_over_otlp_when_configured(tmp_path: Path) -> None:
    import socket
    import threading
    import time

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    received: list[bytes] = []

    async def collect(request: Request) -> Response:
        received.append(await request.body())
        return Response(b"", status_code=200, media_type="application/x-protobuf")

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(Starlette(routes=[Route("/v1/traces", collect, methods=["POST"])]), log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        (tmp_path / "steward.yaml").write_text(
            f"project: otlp\nllm:\n  gateway:\n    tracing: {{otlp_endpoint: 'http://127.0.0.1:{port}/v1/traces'}}\n"
        )
        ws = Workspace(load_spec(tmp_path))
        with start_span(ws, "llm.chat", {"llm.prompt_version": "support@abc123"}):
            pass
        flush(ws)
        assert received and b"llm.chat" in received[0] and b"support@abc123" in received[0]
        assert recent_traces(ws, 1)[0]["attributes"]["llm.prompt_version"] == "support@abc123"  # and still stored locally
    finally:
        server.should_exit = True
        thread.join(timeout=5)
