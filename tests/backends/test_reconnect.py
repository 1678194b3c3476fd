"""The metadata store over a PostgreSQL that restarts, and the mapping of outside-server errors into Steward's tree."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from servers import OwnPostgres

from steward.backends.health import as_unavailable, redact_url
from steward.backends.sql_metadata import SqlMetadataStore, open_metadata_store
from steward.errors import BackendUnavailable


@pytest.fixture
def own_pg() -> Iterator[OwnPostgres]:
    server = OwnPostgres()
    try:
        yield server
    finally:
        server.close()


def test_the_store_reconnects_after_a_restart_without_an_error(own_pg: OwnPostgres) -> None:
    store = open_metadata_store(own_pg.url)
    store.execute("INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?)", ("a", "o", 1.0))
    before = store._conn
    own_pg.stop()
    own_pg.start()
    # the old session was terminated by the restart: the next statement runs on a new one, transparently
    assert store.fetchone("SELECT owner FROM locks WHERE name = ?", ("a",)) == {"owner": "o"}
    assert store._conn is not before
    store.execute("INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?)", ("b", "o", 1.0))
    with store.transaction():
        store.execute("DELETE FROM locks WHERE name = ?", ("a",))
    assert [r["name"] for r in store.fetchall("SELECT name FROM locks ORDER BY name")] == ["b"]
    store.ping()
    store.close()


def test_while_down_every_call_is_backend_unavailable_with_the_password_hidden(own_pg: OwnPostgres) -> None:
    url = own_pg.url.replace("postgres@", "postgres:pw-secret@")
    store = open_metadata_store(url)
    own_pg.stop()
    for call in (
        lambda: store.fetchall("SELECT 1 AS x"),
        lambda: store.execute("DELETE FROM locks"),
        store.ping,
        lambda: store.try_lock("x", "me", 10),
    ):
        with pytest.raises(BackendUnavailable) as err:
            call()
        assert err.value.code == "backend.unavailable" and err.value.http_status == 503 and err.value.exit_code == 7
        assert "pw-secret" not in str(err.value) and "postgres:***@" in err.value.message, err.value.message
    with pytest.raises(BackendUnavailable, match=r"postgres:\*\*\*@"):
        SqlMetadataStore(url)
    own_pg.start()
    assert store.try_lock("x", "me", 10) is True
    store.close()


def test_a_transaction_cut_by_a_restart_fails_whole_and_the_next_one_works(own_pg: OwnPostgres) -> None:
    store = open_metadata_store(own_pg.url)
    with pytest.raises(BackendUnavailable), store.transaction():
        store.execute("INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?)", ("half", "o", 1.0))
        own_pg.stop()
        store.execute("INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?)", ("other", "o", 1.0))
    own_pg.start()
    # nothing of the cut transaction landed, and the store is usable again
    assert store.fetchall("SELECT name FROM locks") == []
    with store.transaction():
        store.execute("INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?)", ("whole", "o", 1.0))
    assert [r["name"] for r in store.fetchall("SELECT name FROM locks")] == ["whole"]
    store.close()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("redis://:secret@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://u@h/db?password=x&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
        ("sqlite:///tmp/m.db", "sqlite:///tmp/m.db"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_client_connection_errors_map_to_backend_unavailable_and_others_do_not() -> None:
    import psycopg
    import redis

    for exc in (psycopg.OperationalError("the connection is closed"), redis.ConnectionError("refused"), redis.TimeoutError("t")):
        mapped = as_unavailable(exc)
        assert mapped is not None and mapped.code == "backend.unavailable"
    assert as_unavailable(psycopg.errors.UniqueViolation("dup")) is None
    assert as_unavailable(redis.ResponseError("WRONGTYPE")) is None
    assert as_unavailable(ValueError("x")) is None


def test_the_api_never_answers_plain_text() -> None:
    import asyncio

    outage, bug = asyncio.run(_answers_to_failures())
    assert outage.status_code == 503 and outage.headers["content-type"] == "application/problem+json"
    assert outage.headers["retry-after"] == "2" and outage.json()["code"] == "backend.unavailable"
    assert bug.status_code == 500 and bug.headers["content-type"] == "application/problem+json"
    assert bug.json()["code"] == "internal.error" and "a bug" not in bug.text  # no internals leak to clients


async def _answers_to_failures() -> tuple[httpx.Response, httpx.Response]:
    """What the API answers when a route hits a Redis outage, and when it hits a plain bug."""
    import redis

    from steward.api.app import create_app

    app = create_app(None)

    @app.get("/boom/redis")
    async def _redis() -> None:
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    @app.get("/boom/bug")
    async def _bug() -> None:
        raise RuntimeError("a bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get("/boom/redis"), await client.get("/boom/bug")
