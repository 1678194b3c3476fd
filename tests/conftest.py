"""Shared fixtures: temporary projects and the real PostgreSQL / Redis servers.

Tests that need a server use the real one on 127.0.0.1. When it is absent they
skip with the reason, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PG_HOST = os.environ.get("STEWARD_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("STEWARD_TEST_PG_PORT", "5432"))
REDIS_HOST = os.environ.get("STEWARD_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("STEWARD_TEST_REDIS_PORT", "6379"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    """Skip (or, under CI=true, fail) when a real server is absent."""
    if _reachable(host, port):
        return
    reason = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: server-backed tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the real server, dropped afterwards."""
    require_server("PostgreSQL", PG_HOST, PG_PORT)
    import psycopg

    admin = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
    name = f"steward_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_server_url: str) -> str:
    """A PostgreSQL URL whose public schema is emptied before each test."""
    import psycopg

    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return pg_server_url


@pytest.fixture
def redis_url() -> str:
    """The real Redis on 127.0.0.1 (tests use unique key names, never FLUSHALL)."""
    require_server("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture
def unique() -> str:
    """A short unique token for key and stream names."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """An empty project directory with a minimal steward.yaml and contract."""
    (tmp_path / "contracts").mkdir()
    (tmp_path / "landing" / "events").mkdir(parents=True)
    (tmp_path / "steward.yaml").write_text(
        "project: test\n"
        "sources:\n"
        "  events:\n"
        "    path: landing/events\n"
        "    format: csv\n"
        "    contract: events\n"
        "contracts:\n"
        "  events: contracts/events.yaml\n"
    )
    return tmp_path


@pytest.fixture
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 220-column console for CLI tests that read Rich tables (the CLI caches its console: drop it)."""
    import importlib

    cli_app = importlib.import_module("steward.cli.app")
    monkeypatch.setenv("COLUMNS", "220")
    monkeypatch.delitem(cli_app._state, "console", raising=False)
