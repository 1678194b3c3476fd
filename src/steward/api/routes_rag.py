"""``POST /v1/rag/ask`` (viewer+): a grounded answer with numbered citations, over HTTP.

Retrieval and answering are CPU-bound (embedding), so they run in a worker
thread and the event loop stays free for other requests. In LLM mode the answer
goes through the app's own gateway (the one serving ``/v1/chat/completions``),
awaited on this event loop, so its circuit breaker and caches are shared.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from steward.api.auth import Principal, load_keys, require
from steward.api.routes_llm import get_gateway
from steward.api.routes_models import body_schema, parse_body, read_json
from steward.errors import Conflict
from steward.llm.rag import ask

__all__ = ["AskRequest", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/rag", tags=["rag"])


class AskRequest(BaseModel):
    """A question for the RAG pipeline."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=4000)
    k: int | None = Field(default=None, ge=1, le=50)
    collection: str | None = None


def _principal(request: Request) -> Principal:
    if getattr(request.app.state, "api_keys", None) is None:
        ws = request.app.state.workspace
        request.app.state.api_keys = load_keys(ws.spec.serving.auth, ws.spec)
    return require(request, "viewer")


@router.post("/ask", openapi_extra=body_schema(AskRequest))
async def ask_endpoint(request: Request) -> dict[str, Any]:
    """Answer with citations; ``abstained`` is true (and the text says "I don't know") when retrieval is weak.

    Needs an API key (viewer or higher): 401 without one. Guardrails apply: an injection attempt
    is refused with 422 problem+json (``guardrail.injection``).
    """
    ws = request.app.state.workspace
    if ws is None:
        raise Conflict("the API was started without a project", code="rag.no_workspace", hint="start it with --spec PATH")
    _principal(request)
    body = parse_body(AskRequest, await read_json(request))  # after auth: no key is 401 whatever the body
    gateway, loop = None, None
    if ws.spec.llm.rag.model:
        gateway, loop = get_gateway(request), asyncio.get_running_loop()
    ans = await run_in_threadpool(ask, ws, body.question, body.k, collection=body.collection, gateway=gateway, loop=loop)
    out = asdict(ans)
    out.pop("prompt", None)
    return out
