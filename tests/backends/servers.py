"""Throwaway PostgreSQL and Redis servers that a test may stop, freeze and restart.

The machine's own servers must never be stopped, so fault tests start their own on a
free port in a temporary directory. PostgreSQL refuses to run as root: when the tests
run as root the server runs as the ``postgres`` user (``subprocess``'s ``user=``).
When a server cannot be started the test skips with the reason, except under
``CI=true``, where it fails.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

__all__ = ["OwnPostgres", "OwnRedis", "free_port", "unavailable"]


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail under CI=true (server-backed tests must run there)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: server-backed tests must run)")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, *, up: bool, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                reached = True
        except OSError:
            reached = False
        if reached == up:
            return True
        time.sleep(0.05)
    return False


class OwnPostgres:
    """A private PostgreSQL cluster (initdb + postgres) on a free port; ``stop``/``start`` keep its data."""

    def __init__(self) -> None:
        initdb = shutil.which("initdb")
        if initdb is None:
            unavailable("PostgreSQL's initdb is not on PATH")
        self._bin = Path(str(initdb)).parent
        self._user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                unavailable("running as root with no 'postgres' user to run a private PostgreSQL as")
            self._user = "postgres"
        self.dir = Path(tempfile.mkdtemp(prefix="steward-pg-"))
        if self._user is not None:
            shutil.chown(self.dir, self._user)
        self.data = self.dir / "data"
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        done = self._run([str(self._bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"])
        if done.returncode != 0:
            unavailable(f"initdb failed: {done.stderr.decode(errors='replace')[-300:]}")
        self.start()

    @property
    def url(self) -> str:
        """The URL of the ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, cmd: list[str]) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(cmd, capture_output=True, user=self._user, cwd=self.dir, check=False)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        cmd = [
            str(self._bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.dir}",
            "-c",
            "fsync=off",
            "-c",
            "shared_buffers=16MB",
        ]
        kwargs: dict[str, Any] = {"user": self._user} if self._user else {}
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir, **kwargs)
        if not _wait_port(self.port, up=True):
            self.stop()
            unavailable("a private PostgreSQL did not start within 15 s")
        # accepting TCP is not yet accepting queries (startup recovery): wait for a real session
        import psycopg

        deadline = time.monotonic() + 15
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): every session is terminated, as in a restart or failover."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            self._proc = None

    def close(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnRedis:
    """A private redis-server on a free port (no persistence); ``freeze`` black-holes it (SIGSTOP)."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            unavailable("redis-server is not on PATH")
        self._exe = str(exe)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="steward-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        cmd = [self._exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not _wait_port(self.port, up=True):
            self.stop()
            unavailable("a private redis-server did not start within 15 s")

    def stop(self) -> None:
        """Kill the server (connections drop at once)."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts TCP but nothing answers (a black hole)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: answer again (nothing to do when stopped)."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
