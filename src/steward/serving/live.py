"""A running model server as the service layer sees it: blocking, thread-safe calls.

:mod:`steward.ops` is synchronous (the CLI, the agent's tools, MCP and scripts call it as is; the
HTTP API calls it in a worker thread). When an operation must take effect in a running server at
once (apply a rollout just written, reload a moved alias), it goes through the server's
:class:`LiveHandle`: each call runs on the server's event loop and the calling thread waits for it.
Reads go through the loop too, so they never see a swap or a statistics window half done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from steward.errors import Conflict, StewardError
from steward.serving.rollout import RolloutController, RolloutState
from steward.spec import ServedModelSpec

if TYPE_CHECKING:
    from steward.serving.server import ModelServer
    from steward.workspace import Workspace

__all__ = ["LiveHandle"]

T = TypeVar("T")


class LiveHandle:
    """Blocking, thread-safe calls into a started :class:`~steward.serving.server.ModelServer`.

    Every method must be called from a thread other than the server's event loop (the API does so
    with ``asyncio.to_thread``); called on the loop itself, or with the server stopped, it raises
    (``serving.wrong_thread``, ``serving.not_running``) instead of deadlocking. Each operation's first
    call checks the model against the server this way, so a refused call has written nothing.
    """

    def __init__(self, server: ModelServer) -> None:
        self._server = server

    @property
    def workspace(self) -> Workspace | None:
        """The server's workspace (None when it runs on injected loaders only)."""
        return self._server.ws

    @property
    def controller(self) -> RolloutController | None:
        """The server's rollout controller (None without a workspace)."""
        return self._server.controller

    def serves(self, name: str) -> bool:
        """Whether ``name`` is configured in this server."""
        return self._read(lambda: name in self._server.models)

    def served_spec(self, name: str) -> ServedModelSpec:
        """The serving configuration of ``name``.

        Raises:
            NotFound: the model is not served here.
        """
        return self._read(lambda: self._server.served(name).spec)

    def resolve(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at, through the server's own resolver (the registry, or an injected one)."""
        return self._server.resolve(name, alias)

    def verify(self, name: str, version: str) -> None:
        """Load ``version`` of ``name`` with the server's own loader (hash- and signature-verified) and discard it.

        Runs in the calling thread (a worker thread, never the event loop), so the server keeps answering.

        Raises:
            NotFound: the model is not served here, or no such version.
            DataError: the version cannot be served.
        """
        spec = self.served_spec(name)
        self._server.slots.loader(name, version, list(spec.entity_keys))

    def champion_version(self, name: str) -> str | None:
        """The champion version loaded now (None when nothing is loaded)."""
        return self._read(lambda: self._server.champion_version(name))

    def apply_rollout(self, name: str, state: RolloutState | None, *, event: str | None = None) -> None:
        """Serve ``name`` as ``state`` says, at once."""
        self._call(self._server.apply_rollout(name, state, event=event))

    def reload(self, name: str) -> dict[str, Any]:
        """Re-read ``name``'s alias and rollout and swap in what changed."""
        return self._call(self._server.reload(name))

    def refresh(self) -> dict[str, Any]:
        """Reload every model (one poll)."""
        return self._call(self._server.refresh())

    def evaluate(self, name: str) -> RolloutState | None:
        """Judge ``name``'s running rollout against its SLOs now and apply the decision."""
        return self._call(self._server.tick(name))

    def routing(self, name: str) -> dict[str, Any] | None:
        """``name``'s traffic split now (None when not served here)."""
        return self._read(lambda: self._server.routing(name))

    def variant_stats(self, name: str) -> dict[str, Any]:
        """Window statistics per variant of ``name`` (empty when not served here)."""
        return self._read(lambda: self._server.variant_stats(name) if name in self._server.models else {})

    def describe(self, name: str) -> dict[str, Any]:
        """What the server holds for ``name``: loaded versions, schema, rollout, statistics.

        Raises:
            NotFound: the model is not served here.
        """
        return self._read(lambda: self._server.describe(name))

    def _read(self, fn: Callable[[], T]) -> T:
        async def read() -> T:
            return fn()

        return self._call(read())

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._server.loop
        if loop is None or loop.is_closed():
            coro.close()
            raise Conflict("the model server is not running", code="serving.not_running", hint="start it first (ModelServer.start)")
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            coro.close()
            raise StewardError(
                "a blocking server call was made on the server's own event loop",
                code="serving.wrong_thread",
                hint="call steward.ops from a worker thread (asyncio.to_thread)",
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()
