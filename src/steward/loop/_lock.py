"""One loop per model: a TTL lock in the metadata store, heartbeated while the loop runs.

The lock lives in the metadata store's ``locks`` table, so it holds across
processes and hosts on SQLite and PostgreSQL alike. The owner string names the
host and process id; a lock whose owner is a dead process *on this host* is
taken over at once (a crashed loop need not wait for its TTL), otherwise the
lock is only taken over once its TTL has expired (the store's ``try_lock``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING

from steward.errors import LockHeld

if TYPE_CHECKING:
    from steward.backends.base import MetadataStore

__all__ = ["LoopLock", "lock_name", "owner_alive"]

logger = logging.getLogger(__name__)


def lock_name(model: str) -> str:
    """The lock guarding ``model``'s loop."""
    return f"loop:{model}"


def new_owner() -> str:
    """``host/pid/token``: enough to tell whether the owner process is still alive."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool:
    """False only when ``owner`` is a process on this host that no longer exists (unknown owners count as alive)."""
    parts = owner.split("/")
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return True
    try:
        pid = int(parts[1])
    except ValueError:
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


class LoopLock:
    """The ``loop:<model>`` lock, with a heartbeat thread that extends it every ``ttl_s / 3`` seconds.

    Use as a context manager after :meth:`acquire`; ``lost`` turns True if the
    heartbeat could not extend the lock (the loop then stops at its next step).
    """

    def __init__(self, store: MetadataStore, model: str, ttl_s: float) -> None:
        self.store = store
        self.model = model
        self.name = lock_name(model)
        self.ttl_s = ttl_s
        self.owner = new_owner()
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holder(self) -> dict[str, object] | None:
        """The current holder row (``owner``, ``expires_at``), or None."""
        return self.store.fetchone("SELECT owner, expires_at FROM locks WHERE name = ?", (self.name,))

    def acquire(self) -> None:
        """Take the lock, taking it over from a dead process on this host.

        Raises:
            LockHeld: another live process holds it (the message names the holder).
        """
        if self.store.try_lock(self.name, self.owner, self.ttl_s):
            return
        holder = self.holder()
        if holder is not None and not owner_alive(str(holder["owner"])):
            logger.warning("taking over %s from dead process %s", self.name, holder["owner"])
            self.store.release_lock(self.name, str(holder["owner"]))
            if self.store.try_lock(self.name, self.owner, self.ttl_s):
                return
            holder = self.holder()
        who = str(holder["owner"]) if holder else "another process"
        until = ""
        if holder and holder.get("expires_at") is not None:
            until = f" until {datetime.fromtimestamp(float(str(holder['expires_at'])), UTC).isoformat(timespec='seconds')}"
        raise LockHeld(
            f"a loop of {self.model} is already running (lock {self.name} held by {who}{until})",
            hint="wait for it to finish ('steward loop history'); a crashed loop's lock expires after its TTL",
            details={"lock": self.name, "holder": who},
        )

    def check(self) -> None:
        """Raise :class:`LockHeld` if the heartbeat lost the lock."""
        if self.lost:
            raise LockHeld(
                f"the loop of {self.model} lost its lock {self.name}",
                hint="another loop took over after the TTL expired; see 'steward loop history'",
            )

    def _beat(self) -> None:
        interval = max(self.ttl_s / 3.0, 0.05)
        while not self._stop.wait(interval):
            try:
                if not self.store.try_lock(self.name, self.owner, self.ttl_s):
                    self.lost = True
                    logger.error("loop lock %s was taken by another owner", self.name)
                    return
            except Exception:  # a store hiccup: try again at the next beat, the TTL has slack
                logger.exception("could not extend loop lock %s", self.name)

    def __enter__(self) -> LoopLock:
        self._thread = threading.Thread(target=self._beat, name=f"steward-loop-lock-{self.model}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        try:
            self.store.release_lock(self.name, self.owner)
        except Exception:  # the TTL frees it anyway
            logger.exception("could not release loop lock %s", self.name)
