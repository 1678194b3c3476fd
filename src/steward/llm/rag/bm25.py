"""Okapi BM25 keyword retrieval over chunk texts, as a sparse matrix.

The per-(chunk, term) BM25 weights are computed once into a CSC matrix, so a
query is the sum of a few columns: milliseconds for a hundred thousand chunks.
Identifiers are split on dots and underscores (``json.dumps`` → ``json``,
``dumps``) and also kept whole, so both "dumps" and "json.dumps" match.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from steward.llm._text import tokenize

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["BM25Index", "tokenize"]

logger = logging.getLogger(__name__)


class BM25Index:
    """BM25 (k1=1.2, b=0.75) over a fixed list of texts."""

    def __init__(self, texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        import numpy as np
        from scipy import sparse

        self.n = len(texts)
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        counts: list[int] = []
        lengths = np.zeros(self.n, dtype=np.float32)
        for i, text in enumerate(texts):
            tf: dict[int, int] = {}
            toks = tokenize(text)
            lengths[i] = len(toks)
            for t in toks:
                j = vocab.setdefault(t, len(vocab))
                tf[j] = tf.get(j, 0) + 1
            rows.extend([i] * len(tf))
            cols.extend(tf.keys())
            counts.extend(tf.values())
        self.vocab = vocab
        tfm = np.asarray(counts, dtype=np.float32)
        r = np.asarray(rows, dtype=np.int64)
        c = np.asarray(cols, dtype=np.int64)
        avgdl = float(lengths.mean()) if self.n else 1.0
        df = np.bincount(c, minlength=len(vocab)).astype(np.float32)
        idf = np.log1p((self.n - df + 0.5) / (df + 0.5))
        norm = k1 * (1 - b + b * lengths[r] / max(avgdl, 1e-9))
        weights = idf[c] * tfm * (k1 + 1) / (tfm + norm)
        self._m: Any = sparse.csc_matrix((weights, (r, c)), shape=(self.n, max(1, len(vocab))), dtype=np.float32)

    def scores(self, query: str) -> npt.NDArray[np.float32]:
        """BM25 score of every text for the query (zeros when no term matches)."""
        import numpy as np

        ids = sorted({self.vocab[t] for t in tokenize(query) if t in self.vocab})
        if not ids or self.n == 0:
            return np.zeros(self.n, dtype=np.float32)
        out: npt.NDArray[np.float32] = np.asarray(self._m[:, ids].sum(axis=1), dtype=np.float32).reshape(-1)
        return out

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best (index, score) pairs with a positive score, best first."""
        import numpy as np

        s = self.scores(query)
        if self.n == 0:
            return []
        k = min(k, self.n)
        idx = np.argpartition(-s, k - 1)[:k] if k < self.n else np.arange(self.n)
        idx = idx[np.argsort(-s[idx], kind="stable")]
        return [(int(i), float(s[i])) for i in idx if s[i] > 0]
