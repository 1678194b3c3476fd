"""Retrieval-augmented answers over a real corpus: the Python standard library and Steward's docs.

Usage::

    from steward.llm.rag import ingest, ask

    report = ingest(ws, "stdlib")          # or ingest(ws, "docs/"), idempotent by content hash
    answer = ask(ws, "How do I pretty-print JSON?")
    print(answer.text)                     # "... [1]"
    for c in answer.citations:
        print(c.n, c.doc_id, c.section)

Storage is LanceDB under ``ROOT/vectors`` by default and a shared Chroma server
when ``storage.vector_store_url`` is set (see :mod:`steward.backends.factory`).
"""

from __future__ import annotations

from steward.llm.rag.answer import IDK, ask, build_prompt, extractive_answer, generate
from steward.llm.rag.corpus import STDLIB_MODULES, Document, Section, load_path, stdlib_documents
from steward.llm.rag.ingest import collection_documents, ingest, ingest_documents, vector_store
from steward.llm.rag.retrieve import Retrieval, retrieve
from steward.llm.rag.types import Answer, Citation, IngestReport, Retrieved

__all__ = [
    "IDK",
    "STDLIB_MODULES",
    "Answer",
    "Citation",
    "Document",
    "IngestReport",
    "Retrieval",
    "Retrieved",
    "Section",
    "ask",
    "build_prompt",
    "collection_documents",
    "extractive_answer",
    "generate",
    "ingest",
    "ingest_documents",
    "load_path",
    "retrieve",
    "stdlib_documents",
    "vector_store",
]
