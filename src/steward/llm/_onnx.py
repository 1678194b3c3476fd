"""ONNX Runtime path for all-MiniLM-L6-v2: a one-time export, cached, then torch-free inference.

The bundled safetensors weights are exported once with ``torch.onnx.export`` into
a cache directory, under a file name keyed by the weights' SHA-256 and an export
format version, so a changed model or exporter produces a new file and a second
load reuses the first export. The exported graph includes sentence-transformers'
pooling (mean over real tokens, by attention mask) and L2 normalisation, so the
runtime only tokenizes, pads and runs it.

Private to :mod:`steward.llm.embeddings`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

logger = logging.getLogger(__name__)

#: Bumped whenever the exported graph changes (inputs, pooling, opset), so stale caches are ignored.
EXPORT_VERSION = 1
OPSET = 17
#: Positions the model was built with (sentence-transformers' ``max_seq_length``), [CLS]/[SEP] included.
MAX_SEQ_LEN = 256

_hash_lock = threading.Lock()
_hashes: dict[tuple[str, int, int], str] = {}
_export_lock = threading.Lock()


def cache_dir() -> Path:
    """Where exported models live: ``$STEWARD_CACHE_DIR``, else ``$XDG_CACHE_HOME/steward``, else ``~/.cache/steward``."""
    env = os.environ.get("STEWARD_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "steward" / "models"


def weights_hash(weights: Path) -> str:
    """SHA-256 of the weights file (memoised per process by path, size and mtime)."""
    st = weights.stat()
    key = (str(weights), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        cached = _hashes.get(key)
        if cached is None:
            h = hashlib.sha256()
            with weights.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            cached = _hashes[key] = h.hexdigest()
    return cached


def onnx_path(model_dir: Path, directory: Path | None = None, *, int8: bool = False) -> Path:
    """The cache file for the model in ``model_dir`` (it may not exist yet); ``int8`` for the quantized one."""
    digest = weights_hash(model_dir / "model.safetensors")[:16]
    kind = "-int8" if int8 else ""
    return (directory or cache_dir()) / f"all-MiniLM-L6-v2-{digest}{kind}-v{EXPORT_VERSION}.onnx"


def _atomic_target(target: Path) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return tmp


def export(model_dir: Path, target: Path) -> None:
    """Export the model (with mean pooling and L2 normalisation) to ``target``, atomically.

    Needs torch, transformers and onnx; runs once per weights file and cache directory.
    """
    import torch
    from transformers import AutoModel

    # Eager attention traces to plain MatMul/Softmax ops; the SDPA path bakes shape checks into the trace.
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()

    class _Pooled(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            # Same arithmetic as sentence_transformers' Pooling(mean) + Normalize modules.
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    ids = torch.ones((2, 16), dtype=torch.long)
    dyn = {0: "batch", 1: "seq"}
    # Write beside the target and rename: concurrent processes never see a half-written file.
    tmp = _atomic_target(target)
    try:
        # The tracer's warnings (shape checks frozen as constants) are expected: the checks compare the
        # mask with itself, and the exported graph is verified against torch on varied lengths in the tests.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Pooled(model),
                (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                tmp,
                dynamo=False,
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["embedding"],
                dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "token_type_ids": dyn, "embedding": {0: "batch"}},
                opset_version=OPSET,
            )
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared by users of one machine
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def ensure_exported(model_dir: Path, directory: Path | None = None) -> Path:
    """The cached ONNX file for ``model_dir``, exporting it first if it is missing."""
    path = onnx_path(model_dir, directory)
    with _export_lock:
        if not path.exists():
            import time

            t0 = time.perf_counter()
            logger.info("exporting %s to ONNX at %s (once per weights file)", model_dir.name, path)
            export(model_dir, path)
            logger.info("ONNX export done in %.1fs", time.perf_counter() - t0)
    return path


def quantize(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of the exported fp32 model, atomically into ``target``.

    Weights of the MatMuls are int8 per output channel; the six FFN down-projections
    (``layer.N/output/dense``) stay fp32 because their inputs carry the outlier
    activations that pushed the cosine to the fp32 vectors below 0.99 when quantized.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source)).graph
    keep_fp32 = [n.name for n in graph.node if n.op_type == "MatMul" and "/output/dense/" in n.name and "/attention/" not in n.name]
    tmp = _atomic_target(target)
    try:
        quantize_dynamic(
            source, tmp, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"], nodes_to_exclude=keep_fp32
        )
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared by users of one machine
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def ensure_quantized(model_dir: Path, directory: Path | None = None) -> Path:
    """The cached int8 ONNX file for ``model_dir``, exporting and quantizing first if missing."""
    source = ensure_exported(model_dir, directory)
    path = onnx_path(model_dir, directory, int8=True)
    with _export_lock:
        if not path.exists():
            logger.info("quantizing %s to int8 at %s (once per weights file)", source.name, path)
            quantize(source, path)
    return path


class OnnxMiniLM:
    """MiniLM sentence embeddings on ONNX Runtime: tokenize, sort by length, pad per batch, run.

    Args:
        path: The exported model (from :func:`ensure_exported`).
        tokenizer_file: The model's ``tokenizer.json``.
        batch_size: Texts per inference call; batches hold texts of similar length.
    """

    def __init__(self, path: Path, tokenizer_file: Path, batch_size: int = 32) -> None:
        from tokenizers import Tokenizer

        self.path = path
        self.batch_size = batch_size
        tok = Tokenizer.from_file(str(tokenizer_file))
        # sentence-transformers truncates to max_seq_length tokens, [CLS]/[SEP] included.
        tok.enable_truncation(MAX_SEQ_LEN)
        tok.no_padding()
        self._tok = tok
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()

    def session(self, threads: int) -> Any:
        """An inference session with ``threads`` intra-op threads (created once per thread count)."""
        with self._lock:
            sess = self._sessions.get(threads)
            if sess is None:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                # Spinning workers burn the cores other processes (and our own pool) need on a shared machine.
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                sess = self._sessions[threads] = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        return sess

    def embed(self, texts: list[str], threads: int) -> npt.NDArray[np.float32]:
        """L2-normalised float32 embeddings of shape ``(len(texts), 384)``, in input order."""
        import numpy as np

        sess = self.session(threads)
        encs = self._tok.encode_batch(texts)
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        # Similar lengths per batch: padding costs as much compute as real tokens.
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), 384), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = int(lengths[idx].max())
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, j in enumerate(idx):
                n = int(lengths[j])
                ids[row, :n] = encs[j].ids
                mask[row, :n] = 1
            out[idx] = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        return out
