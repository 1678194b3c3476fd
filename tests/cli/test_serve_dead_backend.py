"""`steward serve` with a server it needs out of reach: one red line naming the URL (password hidden) and the fix."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steward.errors import BackendUnavailable


def _dead_port() -> int:
    # bound and never listened on: connecting is refused at once
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("key", "what"), [("metadata_url", "PostgreSQL"), ("tracking_uri", "MLflow tracking database")])
def test_serve_with_an_unreachable_database_prints_one_line_and_exits(tmp_path: Path, key: str, what: str) -> None:
    url = f"postgresql://steward:s3cret@127.0.0.1:{_dead_port()}/steward"
    (tmp_path / "steward.yaml").write_text(f"project: dead\nstorage:\n  {key}: {url}\n")
    code = "from steward.cli import main; main()"
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-c", code, "--spec", str(tmp_path), "serve", "--port", "0"], capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - t0
    out = res.stdout + res.stderr
    assert res.returncode == BackendUnavailable.exit_code, out
    assert "Traceback" not in out and "s3cret" not in out, out
    text = " ".join(out.split())  # the console wraps long lines
    assert f"error[backend.unavailable]: cannot reach the {what}" in text or f"cannot reach {what}" in text, out
    assert "postgresql://steward:***@127.0.0.1" in text and f"fix storage.{key}" in text, out
    assert len(out.strip().splitlines()) <= 4, out
    assert elapsed < 30, elapsed  # MLflow alone would retry an unreachable database for about 100 s
