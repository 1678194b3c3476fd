"""Chunking: sections cut into token windows with overlap, counted in the embedder's own tokens.

A section that fits in one window is one chunk; a longer one is cut into windows
of ``chunk_tokens`` model tokens that share ``overlap_tokens`` with the previous
window. Every chunk starts with its section title, so a window from the middle
of a long docstring still says what it is about. Windows are capped at the
model's 254 usable tokens: text past that would be silently truncated by the
embedder and never be searchable.
"""

from __future__ import annotations

import logging
from typing import Any

from steward.backends.base import VectorRecord
from steward.llm.rag.corpus import Document

__all__ = ["chunk_document", "chunk_documents"]

logger = logging.getLogger(__name__)


def _windows(offsets: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    """Token index windows ``[start, end)`` of ``size`` tokens, stepping by ``size - overlap``."""
    n = len(offsets)
    if n <= size:
        return [(0, n)]
    step = max(1, size - overlap)
    out = []
    start = 0
    while True:
        end = min(n, start + size)
        out.append((start, end))
        if end == n:
            return out
        start += step


def chunk_document(
    doc: Document, tokenizer: Any, chunk_tokens: int = 256, overlap_tokens: int = 32, max_tokens: int = 254
) -> list[VectorRecord]:
    """Cut a document into chunks (records without vectors).

    Args:
        doc: The document.
        tokenizer: A ``tokenizers.Tokenizer`` (the embedder's); used for counts and offsets.
        chunk_tokens: Window size in tokens, capped at ``max_tokens``.
        overlap_tokens: Tokens shared by consecutive windows of a section.
        max_tokens: The embedder's usable tokens per text.

    Returns:
        Records with ids ``doc_id#section_id#n``, in document order.
    """
    records: list[VectorRecord] = []
    position = 0
    for section in doc.sections:
        header = section.title.strip()
        header_tokens = len(tokenizer.encode(header, add_special_tokens=False).ids) if header else 0
        # the header may be long (signatures): it never takes more than half the window
        header = header if header_tokens <= max_tokens // 2 else header[:max_tokens]
        size = max(16, min(chunk_tokens, max_tokens) - min(header_tokens, max_tokens // 2) - 1)
        enc = tokenizer.encode(section.text, add_special_tokens=False)
        offsets: list[tuple[int, int]] = list(enc.offsets)
        if not offsets:
            continue
        for n, (a, b) in enumerate(_windows(offsets, size, min(overlap_tokens, size // 2))):
            body = section.text[offsets[a][0] : offsets[b - 1][1]].strip()
            text = f"{header}\n{body}" if header else body
            records.append(
                VectorRecord(
                    chunk_id=f"{doc.doc_id}#{section.section_id}#{n}",
                    doc_id=doc.doc_id,
                    section=section.section_id,
                    title=section.title,
                    text=text,
                    doc_hash=doc.doc_hash,
                    position=position,
                )
            )
            position += 1
    return records


def chunk_documents(docs: list[Document], tokenizer: Any, chunk_tokens: int = 256, overlap_tokens: int = 32) -> list[VectorRecord]:
    """Chunk several documents (see :func:`chunk_document`)."""
    out: list[VectorRecord] = []
    for doc in docs:
        out.extend(chunk_document(doc, tokenizer, chunk_tokens, overlap_tokens))
    return out
