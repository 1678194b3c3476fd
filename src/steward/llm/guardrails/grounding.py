"""Is a sentence supported by a context? The grounding guard, also used by RAG answers and the evals.

A sentence is supported when it appears verbatim (up to whitespace and case) in
the context, or when it is both close in meaning to some context sentence
(cosine of MiniLM embeddings) and mostly made of the context's words. The two
conditions together reject the typical hallucination: a fluent sentence on the
right topic that asserts something the context does not say.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from steward.llm._text import split_sentences, strip_citations, tokenize
from steward.llm.embeddings import get_embedder

__all__ = ["MIN_COSINE", "MIN_OVERLAP", "split_sentences", "strip_citations", "support_scores", "supported"]

#: Cosine at or above which a paraphrase counts as supported (with enough word overlap).
MIN_COSINE = 0.75
#: Share of the sentence's content words that must occur in the context.
MIN_OVERLAP = 0.6


def _norm(text: str) -> str:
    return re.sub(r"[\s`*]+", " ", text.lower()).strip()


def support_scores(sentences: Sequence[str], contexts: Sequence[str]) -> list[float]:
    """For each sentence: 1.0 if verbatim in a context, else its best cosine to a context sentence,
    scaled down when less than :data:`MIN_OVERLAP` of its content words occur in the contexts.
    """
    if not sentences:
        return []
    joined = " \n".join(_norm(c) for c in contexts)
    ctx_words = set(tokenize(" ".join(contexts)))
    ctx_sents = [s for c in contexts for s in split_sentences(c)]
    keys = [_norm(strip_citations(s)).rstrip(".:!? ") for s in sentences]
    scores = [1.0 if key and key in joined else -1.0 for key in keys]
    todo = [i for i, v in enumerate(scores) if v < 0]
    if todo and ctx_sents:
        emb = get_embedder().embed([strip_citations(sentences[i]) for i in todo] + ctx_sents)
        a, c = emb[: len(todo)], emb[len(todo) :]
        best = (a @ c.T).max(axis=1)
        for j, i in enumerate(todo):
            words = tokenize(strip_citations(sentences[i]))
            overlap = sum(w in ctx_words for w in words) / len(words) if words else 0.0
            scores[i] = float(best[j]) * (1.0 if overlap >= MIN_OVERLAP else overlap / MIN_OVERLAP)
    # Clip in Python: the scores are plain floats here, and numpy stays out of this module's imports.
    return [min(1.0, max(0.0, s)) for s in scores]


def supported(sentences: Sequence[str], contexts: Sequence[str], min_cosine: float = MIN_COSINE) -> list[bool]:
    """Whether each sentence is supported by the contexts (see :func:`support_scores`)."""
    return [s >= min_cosine for s in support_scores(sentences, contexts)]
