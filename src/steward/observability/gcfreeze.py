"""Keep long-lived objects out of Python's cyclic garbage collector in long-running servers.

A full (generation 2) collection walks every tracked object in the process. After start-up
a server holds hundreds of thousands of them that live as long as it does (imported modules,
loaded models, the injection classifier's term tables), and each full pass took 110-150 ms
in the gateway at 500 requests/s: every request in flight waited that long, several times a
minute. :func:`gc.freeze` moves the objects alive now into a permanent generation that
collections skip; garbage made by requests is still collected as before.

The library never touches the process's collector on its own: the server edge
(``steward serve``) calls :func:`enable`, and only then do the hooks freeze.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["enable", "enabled", "freeze_long_lived"]

logger = logging.getLogger(__name__)

_enabled = False


def enable() -> None:
    """Let :func:`freeze_long_lived` act in this process (a long-running server's choice, not a library's)."""
    global _enabled
    _enabled = True


def enabled() -> bool:
    """Whether this process opted in."""
    return _enabled


def freeze_long_lived(*, collect: bool = False) -> int:
    """Freeze every object alive now out of future collections; returns how many are frozen in all (0 unless enabled).

    Args:
        collect: Collect first, so garbage is not frozen with the living. A full collection is a
            pause of its own: do it at start-up, before requests are served, not later.
    """
    if not _enabled:
        return 0
    if collect:
        gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.debug("%d objects frozen out of the garbage collector", frozen)
    return frozen
