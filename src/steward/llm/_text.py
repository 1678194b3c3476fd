"""Plain-text helpers shared by the LLM stages: search terms and sentences.

They sit at the bottom of the LLM layers (below guardrails, gateway and RAG) because
keyword retrieval, the grounding guard and the evals all read text the same way.
"""

from __future__ import annotations

import re

__all__ = ["split_sentences", "strip_citations", "tokenize"]

_WORD = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "me",
        "my",
        "should",
        "would",
        "use",
        "using",
    ]
)


def tokenize(text: str) -> list[str]:
    """Lower-cased terms: whole dotted identifiers plus their parts, minus stop words."""
    out: list[str] = []
    for m in _WORD.finditer(text.lower()):
        word = m.group(0)
        parts = [p for p in re.split(r"[._]+", word) if p]
        if len(parts) > 1:
            out.append(word)
        out.extend(p for p in parts if p not in _STOP)
    return out


_CITE = re.compile(r"\s*\[(\d+)\]")
# A sentence ends at . ! ? (or after the citation markers that follow one) before a capital.
_SPLIT = re.compile(r"(?:(?<=[.!?])|(?<=[.!?] \[\d\])|(?<=[.!?] \[\d\d\]))\s+(?=[A-Z0-9`'\"(*])")


def strip_citations(text: str) -> str:
    """Remove ``[n]`` citation markers."""
    return _CITE.sub("", text).strip()


def split_sentences(text: str) -> list[str]:
    """Sentences of a text: paragraphs joined across line wraps, then split at sentence ends.

    Bullet and definition lines (``-``, ``*``, ``name:``) stay separate sentences.
    """
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in para.splitlines() if ln.strip()]
        merged: list[str] = []
        for ln in lines:
            if merged and not re.match(r"^([-*•]|\d+[.)]|>>>|\w[\w.]*\s*:)\s", ln):
                merged[-1] += " " + ln
            else:
                merged.append(ln)
        for block in merged:
            out.extend(s.strip() for s in _SPLIT.split(block) if s.strip())
    return out
