"""What an operation needs from a running model server to take effect there at once.

Operations write their change where every replica reads it (the registry, the metadata store);
a running ``steward serve`` picks it up at its next poll. When the caller *is* a server (the
HTTP API), it passes its :class:`LiveServer` and the change is applied before the call returns.
:class:`steward.serving.live.LiveHandle` (``ModelServer.live``) implements it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from steward.serving.rollout import RolloutController, RolloutState
    from steward.spec import ServedModelSpec
    from steward.workspace import Workspace

__all__ = ["LiveServer"]


class LiveServer(Protocol):
    """A running model server, called from a worker thread (every call blocks until the server has done it)."""

    @property
    def workspace(self) -> Workspace | None:
        """The server's workspace (None when it runs on injected loaders only)."""

    @property
    def controller(self) -> RolloutController | None:
        """The server's rollout controller (None without a workspace)."""

    def serves(self, name: str) -> bool:
        """Whether ``name`` is configured in this server."""

    def served_spec(self, name: str) -> ServedModelSpec:
        """The serving configuration of ``name`` (raises NotFound when not served)."""

    def resolve(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at, as the server resolves it."""

    def verify(self, name: str, version: str) -> None:
        """Load ``version`` of ``name`` the way the server would (verified) without serving it; raises when it cannot be served."""

    def champion_version(self, name: str) -> str | None:
        """The champion version loaded now."""

    def apply_rollout(self, name: str, state: RolloutState | None, *, event: str | None = None) -> None:
        """Serve ``name`` as ``state`` says, now."""

    def reload(self, name: str) -> dict[str, Any]:
        """Re-read ``name``'s alias and rollout and swap in what changed."""

    def refresh(self) -> dict[str, Any]:
        """Reload every model."""

    def evaluate(self, name: str) -> RolloutState | None:
        """Judge ``name``'s running rollout against its SLOs now."""

    def routing(self, name: str) -> dict[str, Any] | None:
        """``name``'s traffic split now (None when not served)."""

    def variant_stats(self, name: str) -> dict[str, Any]:
        """Window statistics per variant."""

    def describe(self, name: str) -> dict[str, Any]:
        """What the server holds for ``name`` (raises NotFound when not served)."""
