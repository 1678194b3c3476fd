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

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["InjectionResult", "InjectionScorer", "get_scorer", "load_labelled", "pattern_hits", "scorer_ready"]

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


_VECTORIZERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("char", {"analyzer": "char_wb", "ngram_range": (2, 5), "lowercase": True, "sublinear_tf": True, "min_df": 1}),
    ("word", {"analyzer": "word", "ngram_range": (1, 2), "lowercase": True, "sublinear_tf": True}),
)
_LR = {"C": 10.0, "max_iter": 2000, "class_weight": "balanced"}
#: Bumped when the compiled form or the training recipe changes, so stale cache files are ignored.
_COMPILED_VERSION = 1


class InjectionScorer:
    """Patterns + TF-IDF/logistic-regression classifier, trained on construction.

    Training takes ~1.5 s of CPU, so the compiled classifier (plain term weights, JSON, never
    pickle) is cached under the model cache directory, keyed by a hash of the training set,
    the recipe and the scikit-learn version: a new process loads it in milliseconds. Pass
    ``cache=False`` to always train.
    """

    def __init__(self, train: list[tuple[str, int]] | None = None, *, cache: bool = True) -> None:
        data = train if train is not None else load_labelled("injection_train.jsonl")
        self._texts = [t for t, _ in data]
        self._labels = [y for _, y in data]
        self.n_train = len(self._texts)
        self._model: Any = None
        self._intercept = 0.0
        self._parts: list[tuple[Callable[[str], list[str]], dict[str, tuple[float, float]]]] = []
        path = self._cache_path() if cache else None
        if path is not None and self._load(path):
            return
        self._fit()
        self._compile()
        if path is not None:
            self._save(path)

    def _fit(self) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, make_pipeline

        features = FeatureUnion([(name, TfidfVectorizer(**params)) for name, params in _VECTORIZERS])
        self._model = make_pipeline(features, LogisticRegression(**_LR))
        self._model.fit(self._texts, self._labels)

    def _cache_path(self) -> Path | None:
        try:
            import sklearn

            from steward.llm._onnx import cache_dir

            h = hashlib.sha256(json.dumps([_COMPILED_VERSION, sklearn.__version__, repr(_VECTORIZERS), _LR]).encode())
            for text, label in zip(self._texts, self._labels, strict=True):
                h.update(f"{label}\t{text}\n".encode())
            return cache_dir() / f"injection-classifier-{h.hexdigest()[:24]}.json"
        except Exception:  # no usable cache location: just train
            return None

    def _analyzers(self) -> list[Callable[[str], list[str]]]:
        from sklearn.feature_extraction.text import TfidfVectorizer

        return [TfidfVectorizer(**params).build_analyzer() for _, params in _VECTORIZERS]

    def _load(self, path: Path) -> bool:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            tables = [{t: (float(v[0]), float(v[1])) for t, v in part.items()} for part in raw["parts"]]
            self._intercept = float(raw["intercept"])
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return False
        self._parts = list(zip(self._analyzers(), tables, strict=True))
        return True

    def _save(self, path: Path) -> None:
        payload = {"version": _COMPILED_VERSION, "n_train": self.n_train, "intercept": self._intercept,
                   "parts": [{t: list(v) for t, v in table.items()} for _, table in self._parts]}  # fmt: skip
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, separators=(",", ":"))
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)  # readers never see half a file
        except OSError as exc:
            logger.info("could not cache the injection classifier at %s: %s", path, exc)

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
        self._parts = []
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
        if self._model is None:  # loaded from the cache: fit the reference on demand
            self._fit()
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


def scorer_ready() -> bool:
    """Whether the process-wide scorer is trained already (so :func:`get_scorer` returns at once)."""
    return _scorer is not None
