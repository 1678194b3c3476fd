"""The ONNX Runtime embedding path: equal to the torch path, exported once and reused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from steward.errors import BackendUnavailable, SpecError
from steward.llm import _onnx
from steward.llm.embeddings import Embedder, model_dir

# Lengths from one token to past the 256-position window (the last one must be truncated the same way).
TEXTS = [
    "json",
    "Serialize obj to a JSON formatted str.",
    "How do I read a file line by line in Python without loading it all into memory?",
    "pathlib.Path.glob(pattern): Iterate over this subtree and yield all existing files (of any kind, "
    "including directories) matching the given relative pattern.",
    " ".join(f"word{i} describes the argument parser's behaviour when options repeat" for i in range(60)),
]
#: fp32 ONNX vs torch: measured max abs diff ~2e-7 per component; cosine >= 0.999999.
ATOL = 1e-5
MIN_COSINE = 0.9999


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(scope="module")
def onnx_embedder(cache: Path) -> Embedder:
    emb = Embedder(backend="onnx", cache_dir=cache)
    assert emb.backend == "onnx"
    return emb


def test_onnx_equals_torch(onnx_embedder: Embedder) -> None:
    assert len(onnx_embedder.tokenizer.encode(TEXTS[-1]).ids) > 300  # really exercises truncation
    torch_emb = Embedder(backend="torch")
    ref = torch_emb.embed(TEXTS)
    got = onnx_embedder.embed(TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float(np.abs(got - ref).max()) < ATOL
    assert float((got * ref).sum(axis=1).min()) >= MIN_COSINE
    # Order is preserved although batches are sorted by length, and batch composition does not matter.
    single = np.vstack([onnx_embedder.embed([t]) for t in TEXTS])
    assert float(np.abs(single - got).max()) < ATOL
    rev = onnx_embedder.embed(TEXTS[::-1])[::-1]
    assert float(np.abs(rev - got).max()) < ATOL
    # Bulk calls (more than small_batch texts, the multi-threaded session) give the same vectors.
    bulk = onnx_embedder.embed(TEXTS * 8)
    assert float(np.abs(bulk[: len(TEXTS)] - got).max()) < ATOL
    assert float(np.abs(bulk[-len(TEXTS) :] - got).max()) < ATOL
    # Different texts get different vectors (the check above cannot pass on constant output).
    assert float((got[1] * got[2]).sum()) < 0.9


def test_export_cache_is_reused(onnx_embedder: Embedder, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = sorted(cache.glob("*.onnx"))
    assert len(files) == 1
    assert files[0] == _onnx.onnx_path(model_dir(), cache)  # keyed by the bundled weights' hash
    mtime = files[0].stat().st_mtime_ns
    calls: list[Path] = []

    def no_export(model_dir: Path, target: Path) -> None:
        calls.append(target)
        raise AssertionError("re-exported although the cache holds the model")

    monkeypatch.setattr(_onnx, "export", no_export)
    again = Embedder(backend="onnx", cache_dir=cache)
    assert again.backend == "onnx"
    assert not calls
    assert files[0].stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.embed(TEXTS[:2]), onnx_embedder.embed(TEXTS[:2]))
    # An empty cache directory does export (the stub proves export is the only way a file appears).
    with pytest.raises(BackendUnavailable):
        _ = Embedder(backend="onnx", cache_dir=cache / "elsewhere").backend
    assert calls and calls[0].parent == cache / "elsewhere"


def test_cache_key_follows_the_weights(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d, payload in ((a, b"weights-1"), (b, b"weights-2")):
        d.mkdir()
        (d / "model.safetensors").write_bytes(payload)
    assert _onnx.onnx_path(a, tmp_path) != _onnx.onnx_path(b, tmp_path)
    assert _onnx.onnx_path(a, tmp_path) == _onnx.onnx_path(a, tmp_path)


def test_backend_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SpecError):
        Embedder(backend="tensorflow")
    monkeypatch.setenv("STEWARD_EMBED_BACKEND", "torch")
    assert Embedder().backend == "torch"

    def broken(model_dir: Path, target: Path) -> None:
        raise RuntimeError("no exporter here")

    monkeypatch.setattr(_onnx, "export", broken)
    monkeypatch.setenv("STEWARD_EMBED_BACKEND", "auto")
    assert Embedder(cache_dir=tmp_path).backend == "torch"  # auto falls back
    with pytest.raises(BackendUnavailable):
        _ = Embedder(backend="onnx", cache_dir=tmp_path).backend


def test_int8_is_opt_in_and_close(onnx_embedder: Embedder, cache: Path) -> None:
    int8 = Embedder(backend="onnx-int8", cache_dir=cache)
    assert int8.backend == "onnx-int8"
    q_path = _onnx.onnx_path(model_dir(), cache, int8=True)
    assert q_path.exists() and q_path.stat().st_size < 0.8 * _onnx.onnx_path(model_dir(), cache).stat().st_size  # int8 MatMul weights
    got, ref = int8.embed(TEXTS), onnx_embedder.embed(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    cos = (got * ref).sum(axis=1)
    assert float(cos.min()) >= 0.99  # close, but not equal: never chosen by ``auto``
    assert float(np.abs(got - ref).max()) > ATOL
