"""A spec that asks for a backend whose client is not installed gets one error naming the extra to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from steward.backends.factory import open_metadata, open_online_store, open_stream, open_vector_store
from steward.backends.kv_redis import RedisKV
from steward.errors import MissingExtra
from steward.spec import load_spec

CASES = [
    ("psycopg", "storage:\n  metadata_url: postgresql://postgres@127.0.0.1:5432/x\n", open_metadata, "postgres", "storage.metadata_url"),
    ("redis", "storage:\n  online_store_url: redis://127.0.0.1:6379/0\n", open_online_store, "redis", "storage.online_store_url"),
    ("redis", "storage:\n  stream_url: redis://127.0.0.1:6379/0\n", open_stream, "redis", "storage.stream_url"),
    ("chromadb", "storage:\n  vector_store_url: chroma://127.0.0.1:8000\n", open_vector_store, "chroma", "storage.vector_store_url"),
]


def _hide(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    # None in sys.modules makes `import module` raise ImportError, as if it were not installed
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize(("module", "storage", "opener", "extra", "key"), CASES, ids=[c[0] + "-" + c[4] for c in CASES])
def test_missing_client_names_the_key_and_the_extra(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, module: str, storage: str, opener: object, extra: str, key: str
) -> None:
    spec_file = project_dir / "steward.yaml"
    spec_file.write_text(spec_file.read_text() + storage)
    _hide(monkeypatch, module)
    with pytest.raises(MissingExtra) as err:
        opener(load_spec(project_dir))  # type: ignore[operator]
    assert key in err.value.message and f"'{module}'" in err.value.message
    assert err.value.hint == f"pip install 'steward[{extra}]'"
    assert err.value.code == "install.missing_extra"


def test_redis_cache_names_the_redis_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "redis")
    with pytest.raises(MissingExtra, match=r"storage\.cache_url") as err:
        RedisKV("redis://127.0.0.1:6379/0")
    assert "steward[redis]" in str(err.value)


def test_the_cli_prints_one_line_with_the_extra_and_no_traceback(project_dir: Path) -> None:
    spec_file = project_dir / "steward.yaml"
    spec_file.write_text(spec_file.read_text() + "storage:\n  metadata_url: postgresql://postgres@127.0.0.1:5432/x\n")
    # the real entry point in a process where psycopg cannot be imported
    code = "import sys; sys.modules['psycopg'] = None; from steward.cli import main; main()"
    res = subprocess.run(
        [sys.executable, "-c", code, "--spec", str(project_dir), "data", "quarantine"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == MissingExtra.exit_code, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert "pip install 'steward[postgres]'" in res.stderr
    assert "storage.metadata_url" in res.stderr
