"""Hybrid retrieval: vector search and BM25 keyword search, fused by reciprocal rank.

The vector side asks the store (LanceDB or the shared server). The keyword side
is an in-process BM25 index over the collection's chunk texts, built on first
use and rebuilt when the store's version token changes, so every replica keeps
its own index in step with the shared store.

Reciprocal rank fusion: ``score(d) = Σ w_r / (rrf_k + rank_r(d))`` over the two
retrievers; it needs no score calibration between cosine and BM25.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steward.llm.embeddings import get_embedder
from steward.llm.rag.bm25 import BM25Index
from steward.llm.rag.ingest import vector_store
from steward.llm.rag.types import Retrieved

if TYPE_CHECKING:
    from steward.backends.base import VectorRecord, VectorStore
    from steward.workspace import Workspace

__all__ = ["Retrieval", "keyword_index", "retrieve", "rrf"]

logger = logging.getLogger(__name__)


@dataclass
class _KeywordIndex:
    version: str
    records: list[VectorRecord]
    bm25: BM25Index


@dataclass
class Retrieval:
    """The fused ranking and the retrieval's strength.

    Attributes:
        hits: Fused results, best first.
        confidence: The best cosine similarity of any chunk to the question.
        query_vector: The question's embedding (reused by the answerer).
    """

    hits: list[Retrieved]
    confidence: float
    query_vector: Any


_indexes: dict[tuple[str, str], _KeywordIndex] = {}
_lock = threading.Lock()


def keyword_index(store: VectorStore, collection: str) -> _KeywordIndex:
    """The BM25 index of a collection, rebuilt when the store's version changes."""
    key = (store.url, collection)
    version = store.version(collection)
    with _lock:
        idx = _indexes.get(key)
        if idx is not None and idx.version == version:
            return idx
    records = store.records(collection)
    idx = _KeywordIndex(version, records, BM25Index([r.text for r in records]))
    with _lock:
        _indexes[key] = idx
    logger.info("built BM25 index for %s (%d chunks)", collection, len(records))
    return idx


def rrf(rankings: list[tuple[list[str], float]], k: int = 60) -> dict[str, float]:
    """Reciprocal rank fusion of ranked id lists, each with a weight."""
    scores: dict[str, float] = {}
    for ids, weight in rankings:
        for rank, cid in enumerate(ids):
            scores[cid] = scores.get(cid, 0.0) + weight / (k + rank + 1)
    return scores


def retrieve(ws: Workspace, question: str, *, collection: str | None = None, k: int | None = None, candidates: int = 40) -> Retrieval:
    """Hybrid top-``k`` chunks for a question.

    Args:
        ws: The workspace.
        question: The question.
        collection: Default ``llm.rag.default_collection``.
        k: Results wanted; default ``llm.rag.top_k``.
        candidates: Results taken from each retriever before fusion.
    """
    rag = ws.spec.llm.rag
    name = collection or rag.default_collection
    k = k or rag.top_k
    store = vector_store(ws)
    qv = get_embedder().embed([question])[0]
    n = max(candidates, k)
    vhits = store.search(name, qv, n)
    by_id: dict[str, VectorRecord] = {h.record.chunk_id: h.record for h in vhits}
    vscore = {h.record.chunk_id: h.score for h in vhits}
    kw_ids: list[str] = []
    kscore: dict[str, float] = {}
    if rag.hybrid.keyword_weight > 0:
        idx = keyword_index(store, name)
        for i, s in idx.bm25.top(question, n):
            rec = idx.records[i]
            by_id.setdefault(rec.chunk_id, rec)
            kw_ids.append(rec.chunk_id)
            kscore[rec.chunk_id] = s
    fused = rrf([([h.record.chunk_id for h in vhits], rag.hybrid.vector_weight), (kw_ids, rag.hybrid.keyword_weight)], k=rag.hybrid.rrf_k)
    order = sorted(fused, key=lambda c: (-fused[c], c))[:k]
    hits = [
        Retrieved(
            chunk_id=c,
            doc_id=by_id[c].doc_id,
            section=by_id[c].section,
            title=by_id[c].title,
            text=by_id[c].text,
            score=fused[c],
            vector_score=vscore.get(c),
            keyword_score=kscore.get(c),
        )
        for c in order
    ]
    confidence = max((h.score for h in vhits), default=0.0)
    return Retrieval(hits, confidence, qv)
