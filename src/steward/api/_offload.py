"""Run a blocking :mod:`steward.ops` call off the event loop, in a pool of its own.

An operation that applies a change to the running server waits for the server's event loop, and
the server runs its own blocking work (registry lookups, model loads, online features) on the
loop's default executor. Were the operations on that executor too, enough concurrent admin calls
could hold every one of its threads while waiting for work that needs a thread. A pool of their
own keeps the two apart. The caller's context (the request id in every log line) goes along.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["call_op"]

T = TypeVar("T")

_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="steward-ops")


async def call_op(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in the operations pool, awaited; the caller's context variables carried over."""
    ctx = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(_POOL, ctx.run, functools.partial(fn, *args, **kwargs))
