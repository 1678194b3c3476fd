"""Ingest: load a corpus, chunk it, embed what changed, and write it to the vector store.

Idempotent by content hash: a document whose hash matches the stored one is
skipped (nothing is embedded or written); a changed document has all its old
chunks replaced; a document gone from the corpus is deleted. Identical chunk
texts inside one ingest are embedded once.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from steward._primitives import Progress, report_progress
from steward.errors import NotFound, ValidationFailed
from steward.llm.embeddings import get_embedder
from steward.llm.rag.chunking import chunk_document
from steward.llm.rag.corpus import Document, html_documents, load_path, stdlib_documents, stdlib_html_dir
from steward.llm.rag.types import IngestReport

if TYPE_CHECKING:
    from steward.backends.base import VectorRecord, VectorStore
    from steward.spec import RagCollectionSpec
    from steward.workspace import Workspace

__all__ = ["EMBED_BATCH", "EMBED_STAGE", "collection_documents", "ingest", "ingest_documents", "vector_store"]

logger = logging.getLogger(__name__)

#: Texts per embedding call: large enough to batch well, small enough for smooth progress.
EMBED_BATCH = 256

#: The stage embedding reports progress as: ``progress(EMBED_STAGE, chunks done, chunks to embed)``.
EMBED_STAGE = "embedding chunks"


def vector_store(ws: Workspace) -> VectorStore:
    """The workspace's vector store (opened once, by the workspace)."""
    return ws.vector_store


def collection_documents(ws: Workspace, name: str) -> list[Document]:
    """Load the documents of a collection declared in ``llm.rag.collections``.

    Raises:
        NotFound: the collection is not declared.
    """
    cols = ws.spec.llm.rag.collections
    if name not in cols:
        raise NotFound(
            f"RAG collection '{name}' is not declared",
            code="rag.unknown_collection",
            hint=f"declare it under llm.rag.collections (known: {', '.join(sorted(cols)) or 'none'})",
        )
    return _load(ws, name, cols[name])


def _load(ws: Workspace, name: str, spec: RagCollectionSpec) -> list[Document]:
    if spec.kind == "stdlib":
        modules = None if spec.modules == "all" else list(spec.modules)
        docs = list(stdlib_documents(modules))
        html = stdlib_html_dir() if spec.include_html else None
        if html is not None:
            docs.extend(html_documents(html))
        return docs
    if not spec.path:
        raise ValidationFailed(f"collection '{name}' of kind 'path' has no path", hint=f"set llm.rag.collections.{name}.path")
    root = ws.spec.resolve(spec.path)
    if not root.exists():
        logger.info("collection %s: %s does not exist (empty corpus)", name, root)
        return []
    return list(load_path(root, prefix=name))


def ingest(
    ws: Workspace,
    source: str | os.PathLike[str] = "stdlib",
    *,
    collection: str | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest a declared collection, or a path of Markdown/HTML/text files.

    Args:
        ws: The workspace.
        source: A collection name from ``llm.rag.collections`` (``stdlib``, ``docs``), or a
            file/directory path.
        collection: For a path: the collection to write (default ``docs``).
        progress: Told ``(EMBED_STAGE, chunks embedded, chunks to embed)``.

    Returns:
        What changed.

    Raises:
        NotFound: ``source`` is neither a declared collection nor an existing path.
    """
    cols = ws.spec.llm.rag.collections
    if isinstance(source, str) and source in cols and collection in (None, source):
        return ingest_documents(ws, source, collection_documents(ws, source), progress=progress)
    path = Path(source)
    if not path.exists():
        raise NotFound(
            f"'{source}' is neither a declared RAG collection nor an existing path",
            code="rag.unknown_source",
            hint=f"pass a directory of .md/.html/.txt files or one of: {', '.join(sorted(cols))}",
        )
    name = collection or "docs"
    return ingest_documents(ws, name, list(load_path(path.resolve(), prefix=name)), progress=progress)


def _embed_unique(records: list[VectorRecord], progress: Progress | None) -> tuple[object, float]:
    import numpy as np

    embedder = get_embedder()
    index: dict[str, int] = {}
    order: list[int] = []
    unique: list[str] = []
    for r in records:
        j = index.get(r.text)
        if j is None:
            j = index[r.text] = len(unique)
            unique.append(r.text)
        order.append(j)
    t0 = time.perf_counter()
    parts = []
    done = 0
    total = len(records)
    for i in range(0, len(unique), EMBED_BATCH):
        parts.append(embedder.embed(unique[i : i + EMBED_BATCH]))
        done = min(total, round(total * min(len(unique), i + EMBED_BATCH) / max(1, len(unique))))
        report_progress(progress, EMBED_STAGE, done, total)
    vecs = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), dtype=np.float32)
    return vecs[np.asarray(order, dtype=np.int64)] if order else vecs, time.perf_counter() - t0


def ingest_documents(
    ws: Workspace, collection: str, docs: list[Document], *, progress: Progress | None = None, prune: bool = True
) -> IngestReport:
    """Write documents into a collection, skipping unchanged ones (by content hash).

    Args:
        ws: The workspace.
        collection: Target collection.
        docs: The whole corpus of the collection.
        progress: Told ``(EMBED_STAGE, chunks embedded, chunks to embed)``.
        prune: Delete stored documents that are not in ``docs``.
    """
    t0 = time.perf_counter()
    rag = ws.spec.llm.rag
    store = vector_store(ws)
    report = IngestReport(collection=collection, documents=len(docs))
    stored = store.doc_hashes(collection)
    seen: set[str] = set()
    todo: list[Document] = []
    for doc in docs:
        if doc.doc_id in seen:
            raise ValidationFailed(f"duplicate document id {doc.doc_id!r} in collection '{collection}'")
        seen.add(doc.doc_id)
        old = stored.get(doc.doc_id)
        if old == doc.doc_hash:
            report.unchanged += 1
            continue
        todo.append(doc)
        if old is None:
            report.added += 1
        else:
            report.updated += 1
    gone = [d for d in stored if d not in seen] if prune else []
    report.removed = len(gone)

    tokenizer = get_embedder().tokenizer
    records: list[VectorRecord] = []
    for doc in todo:
        records.extend(chunk_document(doc, tokenizer, rag.chunk_tokens, rag.overlap_tokens))
    vectors, report.embed_seconds = _embed_unique(records, progress)

    # Replace changed documents: delete their old chunks, then add the new ones.
    replaced = [d.doc_id for d in todo if d.doc_id in stored]
    if replaced or gone:
        store.delete_docs(collection, replaced + gone)
    store.add(collection, records, vectors)
    report.chunks_added = len(records)
    report.chunks_total = store.count(collection)
    report.seconds = time.perf_counter() - t0
    logger.info(
        "ingest %s: %d docs (%d unchanged, %d added, %d updated, %d removed), %d chunks in %.1fs",
        collection,
        report.documents,
        report.unchanged,
        report.added,
        report.updated,
        report.removed,
        report.chunks_added,
        report.seconds,
    )
    return report
