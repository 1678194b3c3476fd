"""A scripted, rule-based planner served as an OpenAI-compatible chat endpoint on 127.0.0.1.

It lets the agent and its eval run offline, end to end through the gateway:
the planner reads the task (the first user message), maps phrases to tools and
extracts arguments with simple rules, calls one tool per turn and answers once
its plan is done. It only calls tools it was offered, like a well-behaved model.

The requested model name picks a behaviour (tests use them to hit each bound):

* ``planner``: the rules above;
* ``obedient``: like ``planner``, but follows instructions found in tool output
  (``CALL tool_name {json}``): a hijacked model, for prompt-injection tests;
* ``slow``: sleeps ``STEWARD_SCRIPTED_DELAY_S`` (default 1.5 s) before each answer;
* ``verbose``: reports 5,000 prompt tokens per turn;
* ``looper``: never finishes (calls ``audit_search`` every turn).

Usage::

    with ScriptedServer() as srv:       # srv.url == "http://127.0.0.1:PORT/v1"
        ...
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = ["ScriptedServer", "plan_task", "scripted_completion"]

_MODEL_RX = re.compile(r"\b(?:model|of|for)\s+([a-z][a-z0-9]*(?:[_\-.][a-z0-9]+)+)\b", re.I)
_SNAKE_RX = re.compile(r"\b([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b")
_VERSION_RX = re.compile(r"\b(?:v|version\s+)(\d+)\b", re.I)
_CALL_RX = re.compile(r"CALL\s+([a-z_]+)\s+(\{.*?\})", re.S)
_STOPWORDS = {"rollback_model", "promote_model", "start_retrain", "list_models", "drift_report", "audit_search"}


@dataclass
class PlannedCall:
    """One call the planner intends to make."""

    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)


def _model_name(task: str) -> str | None:
    m = _MODEL_RX.search(task)
    if m and m.group(1).lower() not in _STOPWORDS:
        return m.group(1)
    for cand in _SNAKE_RX.findall(task):
        if cand.lower() not in _STOPWORDS:
            return str(cand)
    return None


def _reason(task: str) -> str:
    m = re.search(r"\b(?:because|since|as)\b\s+(.+?)(?:[.!?]\s*$|$)", task, re.I)
    text = m.group(1).strip() if m else task.strip()
    return text[:200] if len(text) >= 3 else "requested by the operator"


# (pattern, tool, needs) in the order they are tried; the plan follows their order of appearance in the task.
_INTENTS: list[tuple[str, str]] = [
    (r"\b(?:propose|draft|suggest|recommend)\w*\b[^.]*?\broll\s?-?back\b", "propose_rollback"),
    (r"\b(?:propose|draft|suggest|recommend)\w*\b[^.]*?\bretrain", "propose_retrain"),
    (r"\broll\s?-?back\b", "rollback_model"),
    (r"\bpromote\b", "promote_model"),
    (r"\bretrain", "start_retrain"),
    (r"\bdrift", "drift_report"),
    (r"\b(?:rollout|canary|shadow|blue/green|a/b test)\b", "rollout_status"),
    (r"\bmodel card\b|\bcard of\b", "model_card"),
    (r"\balias (?:history|changes)\b|\bwho promoted\b|\bwhen was\b[^.]*\bpromoted\b", "alias_history"),
    (r"\baudit\b", "audit_search"),
    (r"\b(?:spend|spent|cost|costs|metrics summary|summary of the platform|platform summary)\b", "metrics_summary"),
    (r"\b(?:runbook|documentation|docs|how do i|how to)\b", "docs_search"),
    (r"\b(?:list|which|what)\b[^.]*\bmodels\b|\bregistered models\b", "list_models"),
]


def plan_task(task: str) -> list[PlannedCall]:
    """The calls the rules plan for a task, in the order the task mentions them."""
    found: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for pattern, tool in _INTENTS:
        for m in re.finditer(pattern, task, re.I):
            span = (m.start(), m.end())
            if any(not (span[1] <= a or span[0] >= b) for a, b in taken):
                continue  # already claimed by a more specific intent
            taken.append(span)
            if tool not in [t for _, t in found]:
                found.append((m.start(), tool))
            break
    found.sort()
    model = _model_name(task)
    version = _VERSION_RX.search(task)
    calls: list[PlannedCall] = []
    for _, tool in found:
        args: dict[str, Any] = {}
        if tool in ("rollback_model", "propose_rollback", "start_retrain", "propose_retrain"):
            args = {"model": model, "reason": _reason(task)}
        elif tool == "promote_model":
            args = {"model": model, "version": int(version.group(1)) if version else None, "reason": _reason(task)}
        elif tool in ("drift_report", "rollout_status", "alias_history"):
            args = {"model": model}
        elif tool == "model_card":
            args = {"model": model, "version": int(version.group(1)) if version else 1}
        elif tool == "list_models":
            args = {"model": model} if model and re.search(r"\bversions of\b", task, re.I) else {}
        elif tool == "audit_search":
            act = re.search(r"\b(rollback|promot|approval|agent)\w*", task, re.I)
            action = {
                "rollback": "registry.alias",
                "promot": "registry.alias",
                "agent": "agent.run",
                "approval": "agent.approval.granted",
            }.get(act.group(1).lower() if act else "")
            args = {k: v for k, v in {"model": model, "action": action}.items() if v}
        elif tool == "docs_search":
            args = {"query": task.strip()[:300]}
        elif tool == "metrics_summary":
            d = re.search(r"\b(\d+)\s+days?\b", task)
            args = {"days": int(d.group(1))} if d else {}
        calls.append(PlannedCall(tool, {k: v for k, v in args.items() if v is not None}))
    return calls


def _offered(body: dict[str, Any]) -> set[str]:
    return {str((t.get("function") or {}).get("name")) for t in body.get("tools") or []}


def _tool_messages(messages: list[dict[str, Any]]) -> list[str]:
    return [str(m.get("content") or "") for m in messages if m.get("role") == "tool"]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            inner = json.loads(value)  # tool output arrives JSON-quoted; read it the way a model would
        except ValueError:
            return [value]
        return _strings(inner) if not isinstance(inner, str) else [inner]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _injected(contents: list[str]) -> PlannedCall | None:
    for text in contents:
        for plain in _strings(text):
            for m in _CALL_RX.finditer(plain):
                try:
                    args = json.loads(m.group(2))
                except ValueError:
                    continue
                return PlannedCall(m.group(1), args if isinstance(args, dict) else {})
    return None


def scripted_completion(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """The scripted planner's chat.completion for a request."""
    messages: list[dict[str, Any]] = body.get("messages") or []
    task = next((str(m.get("content") or "") for m in messages if m.get("role") == "user"), "")
    offered = _offered(body)
    results = _tool_messages(messages)
    done = len(results)
    behaviour = model.split("-")[0]
    call: PlannedCall | None = None
    content: str | None = None
    if behaviour == "looper":
        call = PlannedCall("audit_search", {"limit": 1})
    else:
        plan = plan_task(task)
        if behaviour == "obedient":
            call = _injected(results[-1:])
        if call is None:
            if done < len(plan):
                nxt = plan[done]
                if nxt.tool in offered:
                    call = nxt
                    content = f"Step {done + 1} of {len(plan)}: {nxt.tool}."
                else:
                    content = f"I cannot do that: the tool {nxt.tool} is not available to your role."
            elif plan:
                summary = "; ".join(_summarise(r) for r in results)
                content = f"Done. {summary}"
            else:
                content = "I could not map this task to any of my tools."
    message: dict[str, Any] = {"role": "assistant", "content": content}
    finish = "stop"
    if call is not None:
        message["tool_calls"] = [
            {
                "id": f"call_{uuid.uuid4().hex[:8]}",
                "type": "function",
                "function": {"name": call.tool, "arguments": json.dumps(call.arguments)},
            }
        ]
        finish = "tool_calls"
    prompt_chars = sum(len(str(m.get("content") or "")) for m in messages) + len(json.dumps(body.get("tools") or []))
    prompt_tokens = 5000 if behaviour == "verbose" else max(1, prompt_chars // 4)
    completion_tokens = max(1, len(json.dumps(message)) // 4)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _summarise(tool_message: str) -> str:
    try:
        outer = json.loads(tool_message)
        content = str(outer.get("content") or "{}")
    except (ValueError, AttributeError):
        content = tool_message
    try:
        inner = json.loads(content)
        return f"{inner.get('tool')}: {inner.get('status')}"
    except (ValueError, AttributeError):
        # a large result reaches the model truncated (the agent caps tool output), so it is no
        # longer valid JSON; its envelope's leading fields still name the tool and the outcome
        tool = re.search(r'"tool"\s*:\s*"([\w.-]+)"', content)
        status = re.search(r'"status"\s*:\s*"([\w.-]+)"', content)
        return f"{tool.group(1) if tool else 'tool'}: {status.group(1) if status else 'truncated'}"


class ScriptedServer:
    """The scripted planner on a real HTTP port on 127.0.0.1 (uvicorn in a thread).

    Args:
        host: Bind address; only loopback is allowed.
        port: 0 picks a free port.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the scripted planner only listens on loopback")
        self.host, self.port = host, port
        self.url = ""
        self.requests = 0
        self.offered: list[list[str]] = []  # tool names offered in each request, for tests
        self.bodies: list[dict[str, Any]] = []  # the last requests received, for tests
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def app(self) -> Any:
        """The Starlette app (``POST /v1/chat/completions``)."""
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def chat(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests += 1
            self.offered.append(sorted(_offered(body)))
            self.bodies = [*self.bodies[-49:], body]
            model = str(body.get("model") or "planner")
            if model.startswith("slow"):
                await asyncio.sleep(float(os.environ.get("STEWARD_SCRIPTED_DELAY_S", "1.5")))
            if body.get("stream"):
                return JSONResponse({"error": {"message": "the scripted planner does not stream"}}, status_code=400)
            return JSONResponse(scripted_completion(model, body))

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])

    def start(self) -> ScriptedServer:
        """Start serving; returns self once the port accepts connections."""
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host if self.host != "localhost" else "127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="error", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the scripted planner did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.port}/v1"
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
