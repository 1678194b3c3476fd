"""Which servers a workspace depends on, probed for ``/readyz`` and checked before ``steward serve`` starts.

The workspace opens every backend (``Workspace.metadata``, ``.online_store``, ...); this module only
names the ones that live on a server, with their URLs, and asks them to answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from steward._extras import optional_import
from steward.backends.factory import metadata_url_for
from steward.backends.health import client_reason, redact_url
from steward.errors import BackendUnavailable

__all__ = ["backend_openers", "preflight"]


def backend_openers(ws: Any) -> dict[str, tuple[str, Callable[[], Any]]]:
    """The backends of ``ws`` (a :class:`~steward.workspace.Workspace`) that readiness covers: name -> (URL, opener).

    The metadata store always; the online store, counters/cache and stream when steward.yaml gives them a
    server URL (their SQLite defaults are files under ROOT, which cannot go away).
    """
    storage = ws.spec.storage
    openers: dict[str, tuple[str, Callable[[], Any]]] = {"metadata": (metadata_url_for(ws.spec), lambda: ws.metadata)}
    if storage.online_store_url:
        openers["online_store"] = (storage.online_store_url, lambda: ws.online_store)
    if storage.cache_url:
        openers["counters_cache"] = (storage.cache_url, lambda: ws.counter_store)
    if storage.stream_url:
        openers["stream"] = (storage.stream_url, lambda: ws.stream)
    return openers


def preflight(ws: Any, *, timeout_s: float = 3.0) -> None:
    """Fail fast, with the URL and the fix, when a server a long-running command needs cannot be reached.

    The metadata store of ``ws`` (a :class:`~steward.workspace.Workspace`) is opened, which raises
    :class:`BackendUnavailable` for an unreachable server, and pinged. A PostgreSQL ``storage.tracking_uri``
    gets one connection attempt of at most ``timeout_s``: MLflow itself would retry an unreachable
    database for about 100 s before failing, deep in a model load.

    Raises:
        BackendUnavailable: a server does not answer (``backend.unavailable``, CLI exit code 7).
    """
    ping = getattr(ws.metadata, "ping", None)
    if ping is not None:
        ping()
    uri = ws.spec.storage.tracking_uri or ""
    if uri.startswith(("postgresql://", "postgres://")):
        psycopg = optional_import("psycopg", extra="postgres", needed_for="storage.tracking_uri (a PostgreSQL tracking database)")
        try:
            psycopg.connect(uri, connect_timeout=max(1, round(timeout_s))).close()
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(
                f"cannot reach the MLflow tracking database at {redact_url(uri)}: {client_reason(exc)}",
                hint="start PostgreSQL or fix storage.tracking_uri",
                details={"backend": "tracking"},
            ) from None
