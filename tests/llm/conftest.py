"""Fixtures for the LLM tests: a real fake upstream (OpenAI- and Anthropic-shaped) on 127.0.0.1, and gateway projects."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml


class FakeUpstream:
    """A small starlette app served by uvicorn in a thread; its behaviour is chosen by the requested model name.

    Models: ``ok`` (echo), ``fail`` (500), ``limited`` (429), ``slow`` (sleeps 2 s), ``broken`` (stream dies before its
    first token, non-stream 500), ``midbreak`` (stream dies after one token), ``tools`` (always calls the first tool).
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response, StreamingResponse
        from starlette.routing import Route

        def completion(model: str, body: dict[str, Any]) -> dict[str, Any]:
            last = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
            message: dict[str, Any] = {"role": "assistant", "content": f"upstream {model} says: {last}"}
            finish = "stop"
            if model == "tools" and body.get("tools"):
                fn = body["tools"][0]["function"]["name"]
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": fn, "arguments": '{"city": "Paris"}'}}],
                }
                finish = "tool_calls"
            return {
                "id": "chatcmpl-up",
                "object": "chat.completion",
                "created": 1,
                "model": f"{model}-2025-01-01",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            }

        async def chat(request: Request) -> Response:
            body = orjson.loads(await request.body())
            model = body["model"]
            self.calls[model] += 1
            if model == "fail":
                return Response(b'{"error": "boom"}', status_code=500)
            if model.startswith("limited"):  # "limited7" asks the caller to wait 7 s
                wait = model.removeprefix("limited") or "0"
                return Response(b'{"error": "slow down"}', status_code=429, headers={"retry-after": wait})
            if model == "slow":
                await asyncio.sleep(2.0)
            if model == "broken" and not body.get("stream"):
                return Response(b'{"error": "broken"}', status_code=500)
            data = completion(model, body)
            if not body.get("stream"):
                return Response(orjson.dumps(data), media_type="application/json")

            async def events() -> Any:
                base = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": data["model"]}
                yield b"data: " + orjson.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}) + b"\n\n"
                if model == "broken":
                    raise RuntimeError("upstream dies before the first token")
                msg = data["choices"][0]["message"]
                if msg.get("tool_calls"):
                    yield (
                        b"data: "
                        + orjson.dumps({**base, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, **msg["tool_calls"][0]}]}}]})
                        + b"\n\n"
                    )
                else:
                    for word in msg["content"].split(" "):
                        yield b"data: " + orjson.dumps({**base, "choices": [{"index": 0, "delta": {"content": word + " "}}]}) + b"\n\n"
                        if model == "midbreak":
                            raise RuntimeError("upstream dies mid-stream")
                yield (
                    b"data: "
                    + orjson.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": data["choices"][0]["finish_reason"]}]})
                    + b"\n\n"
                )
                if (body.get("stream_options") or {}).get("include_usage"):
                    yield b"data: " + orjson.dumps({**base, "choices": [], "usage": data["usage"]}) + b"\n\n"
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        async def messages(request: Request) -> Response:
            body = orjson.loads(await request.body())
            self.calls["anthropic:" + body["model"]] += 1
            self.last_anthropic = body
            if body.get("tools"):
                content = [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": body["tools"][0]["name"], "input": {"city": "Paris"}},
                ]
                stop = "tool_use"
            else:
                content = [{"type": "text", "text": "Bonjour from Claude."}]
                stop = "end_turn"
            if not body.get("stream"):
                data = {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": content,
                    "stop_reason": stop,
                    "usage": {"input_tokens": 21, "output_tokens": 9},
                }
                return Response(orjson.dumps(data), media_type="application/json")

            def ev(kind: str, data: dict[str, Any]) -> bytes:
                return f"event: {kind}\n".encode() + b"data: " + orjson.dumps({"type": kind, **data}) + b"\n\n"

            async def events() -> Any:
                yield ev("message_start", {"message": {"id": "msg_1", "usage": {"input_tokens": 21, "output_tokens": 1}}})
                for i, block in enumerate(content):
                    if block["type"] == "text":
                        yield ev("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}})
                        for piece in ("Bonjour ", "from ", "Claude."):
                            yield ev("content_block_delta", {"index": i, "delta": {"type": "text_delta", "text": piece}})
                    else:
                        yield ev(
                            "content_block_start",
                            {"index": i, "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}},
                        )
                        yield ev("content_block_delta", {"index": i, "delta": {"type": "input_json_delta", "partial_json": '{"city": '}})
                        yield ev("content_block_delta", {"index": i, "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}})
                    yield ev("content_block_stop", {"index": i})
                yield ev("message_delta", {"delta": {"stop_reason": stop}, "usage": {"output_tokens": 9}})
                yield ev("message_stop", {})

            return StreamingResponse(events(), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/messages", messages, methods=["POST"])])

    def start(self) -> None:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="error", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}/v1"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    """A real HTTP upstream on 127.0.0.1 that answers, fails, times out, rate-limits or breaks streams on demand."""
    up = FakeUpstream()
    up.start()
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture
def gateway_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique: str) -> Callable[..., Any]:
    """A factory: ``make(gateway={...}, storage={...}, prompts={name: text})`` → a Workspace with that gateway spec.

    Two keys exist by default: ``team-a`` (token ``sk-a-<unique>``) and ``team-b``.
    """
    from steward.spec import load_spec
    from steward.workspace import Workspace

    opened: list[Workspace] = []
    monkeypatch.setenv("STEWARD_KEY_TEAM_A", f"sk-a-{unique}")
    monkeypatch.setenv("STEWARD_KEY_TEAM_B", f"sk-b-{unique}")

    def make(
        gateway: dict[str, Any] | None = None, storage: dict[str, Any] | None = None, prompts: dict[str, str] | None = None
    ) -> Workspace:
        gw = {"keys": {"team-a": {"key_env": "STEWARD_KEY_TEAM_A", "team": "a"}, "team-b": {"key_env": "STEWARD_KEY_TEAM_B", "team": "b"}}}
        gw.update(gateway or {})
        doc: dict[str, Any] = {"project": f"gw{unique}", "llm": {"gateway": gw}}
        if storage:
            doc["storage"] = storage
        (tmp_path / "steward.yaml").write_text(yaml.safe_dump(doc))
        for name, text in (prompts or {}).items():
            (tmp_path / "prompts").mkdir(exist_ok=True)
            (tmp_path / "prompts" / name).write_text(text)
        ws = Workspace(load_spec(tmp_path / "steward.yaml"))
        opened.append(ws)
        return ws

    make.token_a = f"sk-a-{unique}"  # type: ignore[attr-defined]
    make.token_b = f"sk-b-{unique}"  # type: ignore[attr-defined]
    yield make
    for ws in opened:
        ws.close()


# --- RAG, evals and guardrails fixtures -------------------------------------------------------


@pytest.fixture(scope="session")
def embedder() -> Any:
    """The process-wide MiniLM embedder, loaded (and warmed) once per test session."""
    from steward.llm.embeddings import get_embedder

    emb = get_embedder()
    emb.embed(["warm up"])
    return emb


def _write_rag_project(root: Path, project: str, rag: dict[str, Any], storage: dict[str, Any] | None = None) -> Any:
    from steward.spec import load_spec
    from steward.workspace import Workspace

    root.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"project": project, "llm": {"rag": rag}}
    if storage:
        doc["storage"] = storage
    (root / "steward.yaml").write_text(yaml.safe_dump(doc))
    return Workspace(load_spec(root / "steward.yaml"))


@pytest.fixture(scope="session")
def stdlib_eval_ws(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Any]:
    """A project whose ``stdlib`` collection is the restricted corpus of the eval set (its 15 modules), ingested once."""
    from steward.llm.evals import eval_modules, load_eval_set
    from steward.llm.rag import ingest

    modules = eval_modules(load_eval_set())
    ws = _write_rag_project(
        tmp_path_factory.mktemp("rag_eval"),
        "rageval",
        {"collections": {"stdlib": {"kind": "stdlib", "modules": modules}, "docs": {"kind": "path", "path": "docs"}}},
    )
    ingest(ws, "stdlib")
    yield ws
    ws.close()


@pytest.fixture
def rag_project(tmp_path: Path, unique: str) -> Callable[..., Any]:
    """A factory: ``make(rag={...}, storage={...}, docs={relpath: text})`` → a Workspace (docs written under ``docs/``)."""

    def make(rag: dict[str, Any] | None = None, storage: dict[str, Any] | None = None, docs: dict[str, str] | None = None) -> Any:
        for rel, text in (docs or {}).items():
            path = tmp_path / "docs" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return _write_rag_project(tmp_path, f"rag{unique}", rag or {"default_collection": "docs"}, storage)

    return make


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server (``chroma run`` from the chromadb package) on 127.0.0.1, for the shared vector store.

    Skips when chromadb is not installed, except under CI=true, where it fails.
    """
    import os
    import shutil
    import subprocess
    import sys

    exe = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if not Path(exe).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("chromadb's 'chroma' server is not installed (CI=true: server-backed tests must run)")
        pytest.skip("chromadb's 'chroma' server is not installed")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma")
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.Popen(
        [exe, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"chroma server did not start on 127.0.0.1:{port}")
                time.sleep(0.2)
        yield f"chroma://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
