"""The server's opt-in GC freeze: nothing happens in a library process; a server keeps start-up objects out of full passes."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import httpx
import pytest

import steward.observability.gcfreeze as gcfreeze
from steward.api.app import create_app


@pytest.fixture
def restore() -> Iterator[None]:
    yield
    gcfreeze._enabled = False
    gc.unfreeze()


def test_library_processes_are_left_alone(restore: None) -> None:
    before = gc.get_freeze_count()
    assert gcfreeze.freeze_long_lived(collect=True) == 0
    assert gc.get_freeze_count() == before


@pytest.mark.anyio
async def test_a_server_freezes_what_it_loaded_at_startup(restore: None) -> None:
    gc.unfreeze()
    gcfreeze.enable()
    app = create_app(None)
    async with app.router.lifespan_context(app):
        frozen = gc.get_freeze_count()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            assert (await client.get("/healthz")).status_code == 200
    assert frozen > 10_000  # modules, the app, its routes: all out of the collector's full passes
    # a full collection no longer walks them: it is far cheaper than one over everything
    tracked_after = len(gc.get_objects(generation=2))
    assert tracked_after < frozen
