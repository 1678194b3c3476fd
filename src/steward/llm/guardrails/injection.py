"""Prompt-injection and jailbreak detection: patterns plus a small classifier.

The patterns catch the well-known phrasings with certainty ("ignore all previous
instructions", "developer mode", chat-template tokens). The classifier (TF-IDF
over character 2-5-grams and word 1-2-grams, logistic regression) catches
paraphrases; it is trained at first use, in well under a second, from the
labelled set kept in the repository (``data/injection_train.jsonl``) — no
pickled model is ever loaded. ``data/injection_test.jsonl`` is held out for
:func:`steward.llm.guardrails.guard_eval`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["InjectionResult", "InjectionScorer", "get_scorer", "load_labelled", "pattern_hits"]

logger = logging.getLogger(__name__)

_V = r"(?:ignore|disregard|forget|override|bypass|skip|pay no attention to|ignora|olvida|ignoriere|ignorez|ignore[sz]?)"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rx, re.IGNORECASE))
    for name, rx in (
        ("ignore_previous", _V + r"\b.{0,40}\b(?:previous|prior|above|earlier|preceding|all|your|any|every|the)\b.{0,25}"
         r"\b(?:instructions?|instr|rules|directions|prompts?|guidelines|guardrails|polic(?:y|ies)|programming|training|restrictions|anweisungen|instrucciones|reglas)\b"),
        ("reveal_prompt", r"\b(?:reveal|print|show|repeat|output|dump|quote|display|tell me|disclose|leak)\b.{0,60}"
         r"\b(?:system|hidden|initial|secret|confidential|original|developer)\s+(?:prompt|instructions?|message|rules|configuration)"),
        ("developer_mode", r"\b(?:enable|activate|enter|simulate|turn on|switch (?:to|into)|in|now in)\s+(?:the\s+)?(?:developer|god|dan|unrestricted|unfiltered|"
         r"jailbreak|jailbroken|opposite|maintenance)\s+mode\b|\bmode\s+(?:on|activated|enabled)\s*[.!,:]"),
        ("persona_override", r"\byou are (?:now|no longer)\b|\bfrom now on,? you\b|\bnew (?:system prompt|persona)\b|"
         r"\byour new (?:instructions|task|goal|orders|rules)\b|\bthe real instructions\b"),
        ("no_rules", r"\b(?:no|without|any)\s+(?:content\s+)?(?:restrictions|filters|filtering|rules|policies|guidelines|limits|ethical)\b.{0,40}"
         r"\b(?:answer|respond|comply|act|behave|simulate|tell|say|now)\b|\b(?:act|behave|pretend|roleplay|simulate)\b.{0,40}"
         r"\b(?:no|without)\s+(?:any\s+)?(?:rules|restrictions|filters|guidelines|policy|policies|limits)\b"),
        ("chat_template", r"<\|im_start\|>|<\|im_end\|>|\[/?INST\]|<\|system\|>|###\s*instruction"),
        ("do_anything_now", r"\bdo anything now\b|\bDAN\b"),
    )
)  # fmt: skip


def pattern_hits(text: str) -> list[str]:
    """Names of the injection patterns that match ``text``."""
    return [name for name, rx in _PATTERNS if rx.search(text)]


def load_labelled(name: str) -> list[tuple[str, int]]:
    """A labelled set shipped in ``guardrails/data`` as ``(text, label)`` pairs (1 = injection)."""
    raw = resources.files("steward.llm.guardrails").joinpath("data", name).read_text(encoding="utf-8")
    rows = [json.loads(line) for line in raw.splitlines() if line.strip()]
    return [(str(r["text"]), int(r["label"])) for r in rows]


@dataclass(frozen=True)
class InjectionResult:
    """The detector's verdict on one text.

    Attributes:
        score: Probability-like score in [0, 1] (1.0 when a pattern matches).
        classifier: The classifier's probability alone.
        patterns: Names of matching patterns.
    """

    score: float
    classifier: float
    patterns: list[str]

    def fires(self, threshold: float) -> bool:
        """Whether the score reaches ``threshold``."""
        return self.score >= threshold


class InjectionScorer:
    """Patterns + TF-IDF/logistic-regression classifier, trained on construction."""

    def __init__(self, train: list[tuple[str, int]] | None = None) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, make_pipeline

        data = train if train is not None else load_labelled("injection_train.jsonl")
        texts = [t for t, _ in data]
        labels = [y for _, y in data]
        features = FeatureUnion(
            [
                ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), lowercase=True, sublinear_tf=True, min_df=1)),
                ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), lowercase=True, sublinear_tf=True)),
            ]
        )
        self._model: Any = make_pipeline(features, LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced"))
        self._model.fit(texts, labels)
        self.n_train = len(texts)
        self._compile()

    def _compile(self) -> None:
        """Fold the fitted pipeline into plain dictionaries: term → (idf, weight) per vectorizer.

        sklearn's ``predict_proba`` on one short text costs ~1.5 ms, almost all of it input
        validation and sparse-matrix construction; the gateway scores every new user message,
        so that was its largest per-request cost. The arithmetic itself is tiny: per vectorizer,
        sublinear tf × idf, L2-normalised, dotted with that vectorizer's slice of the logistic
        regression's coefficients. The same analyzers (sklearn's own) make the same terms, so
        :meth:`classify` equals ``predict_proba`` (a test checks it to 1e-9).
        """
        union = self._model.steps[0][1]
        lr = self._model.steps[-1][1]
        coef = lr.coef_[0]
        self._intercept = float(lr.intercept_[0])
        self._parts: list[tuple[Callable[[str], list[str]], dict[str, tuple[float, float]]]] = []
        offset = 0
        for _, vec in union.transformer_list:
            vocab: dict[str, int] = vec.vocabulary_
            idf = vec.idf_
            table = {term: (float(idf[i]), float(coef[offset + i])) for term, i in vocab.items()}
            self._parts.append((vec.build_analyzer(), table))
            offset += len(vocab)

    def _probability(self, text: str) -> float:
        z = self._intercept
        for analyze, table in self._parts:
            counts: dict[str, int] = {}
            for term in analyze(text):
                if term in table:
                    counts[term] = counts.get(term, 0) + 1
            if not counts:
                continue
            norm = 0.0
            dot = 0.0
            for term, n in counts.items():
                idf, weight = table[term]
                value = (1.0 + math.log(n)) * idf  # sublinear tf
                norm += value * value
                dot += value * weight
            z += dot / math.sqrt(norm)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def classify(self, texts: list[str]) -> list[float]:
        """The classifier's injection probability for each text."""
        return [self._probability(t) for t in texts]

    def classify_sklearn(self, texts: list[str]) -> list[float]:
        """The same probabilities through sklearn's ``predict_proba`` (the reference :meth:`classify` is tested against)."""
        if not texts:
            return []
        return [float(p) for p in self._model.predict_proba(texts)[:, 1]]

    def score(self, text: str) -> InjectionResult:
        """Score one text: patterns first, the classifier for paraphrases."""
        prob = self.classify([text])[0]
        hits = pattern_hits(text)
        return InjectionResult(1.0 if hits else prob, prob, hits)


_scorer: InjectionScorer | None = None
_lock = threading.Lock()


def get_scorer() -> InjectionScorer:
    """The process-wide scorer (trained on first use)."""
    global _scorer
    with _lock:
        if _scorer is None:
            _scorer = InjectionScorer()
        return _scorer
