"""Sentence support for RAG answers: the grounding guard's code, re-exported where RAG callers look for it.

The code lives in :mod:`steward.llm.guardrails.grounding` (grounding is a guardrail, and
guardrails sit below RAG in the LLM layers); this module keeps the old import path working.
"""

from __future__ import annotations

from steward.llm.guardrails.grounding import (
    MIN_COSINE,
    MIN_OVERLAP,
    split_sentences,
    strip_citations,
    support_scores,
    supported,
)

__all__ = ["MIN_COSINE", "MIN_OVERLAP", "split_sentences", "strip_citations", "support_scores", "supported"]
