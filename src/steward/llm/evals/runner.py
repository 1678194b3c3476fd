"""The offline RAG eval: retrieval, faithfulness, answer relevance, abstention; optional LLM judge.

Metrics (over the eval set in ``data/stdlib_eval.jsonl``):

* ``recall_at_k``: share of answerable questions with at least one gold source
  section (``doc_id#section``) among the top ``k`` retrieved chunks.
* ``mrr``: mean reciprocal rank of the first gold section (0 when absent).
* ``faithfulness``: share of answer sentences supported by the chunks they cite
  (:mod:`steward.llm.guardrails.grounding`), over answered questions.
* ``answer_relevance``: mean cosine similarity of the answer to the question, and
  ``reference_similarity`` to the reference answer (MiniLM embeddings).
* ``answer_rate``: answerable questions answered (not "I don't know");
  ``abstain_rate``: unanswerable questions answered "I don't know".
* ``suggested_min_score``: the confidence threshold that best separates answerable
  from unanswerable questions on this set (balanced accuracy) — the calibration of
  ``llm.rag.min_score``.

LLM-as-judge (``judge=True`` with a gateway alias): each answer is scored 1-5 for
correctness against the reference. Known biases of such judges, which is why it
is an extra signal and never a CI gate: *position bias* (a judge comparing two
answers favours the first or second slot; we grade one answer at a time, and the
reference always comes first), *verbosity bias* (longer answers score higher
regardless of content; we ask for correctness only and report answer length
beside the score), and *self-preference* (a model rates text written by itself
or its family higher; use a judge alias of a different model family than the
answering model when possible).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from steward.llm.embeddings import get_embedder
from steward.llm.guardrails.grounding import split_sentences, supported
from steward.llm.rag import ask, generate, ingest

if TYPE_CHECKING:
    from steward.llm.rag.types import Answer
    from steward.workspace import Workspace

__all__ = [
    "EvalItem",
    "EvalReport",
    "ItemResult",
    "check_thresholds",
    "eval_modules",
    "load_eval_set",
    "load_thresholds",
    "run_eval",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalItem:
    """One eval question: its gold source sections and a reference answer."""

    id: str
    question: str
    sources: list[str]
    reference: str
    answerable: bool = True


@dataclass
class ItemResult:
    """How one question went."""

    id: str
    question: str
    answer: str
    answerable: bool
    abstained: bool
    confidence: float
    rank: int | None
    faithfulness: float | None
    relevance: float | None
    reference_similarity: float | None
    retrieved: list[str]
    judge_score: float | None = None


@dataclass
class EvalReport:
    """Aggregate metrics (see the module docstring) and per-item results."""

    items: int
    answerable: int
    k: int
    recall_at_k: float
    mrr: float
    faithfulness: float
    answer_relevance: float
    reference_similarity: float
    answer_rate: float
    abstain_rate: float
    suggested_min_score: float
    min_score: float
    seconds: float
    judge_score: float | None = None
    results: list[ItemResult] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """The metric values keyed as in ``thresholds.yaml``."""
        out = {
            f"recall_at_{self.k}": self.recall_at_k,
            "recall_at_k": self.recall_at_k,
            "mrr": self.mrr,
            "faithfulness": self.faithfulness,
            "answer_relevance": self.answer_relevance,
            "reference_similarity": self.reference_similarity,
            "answer_rate": self.answer_rate,
            "abstain_rate": self.abstain_rate,
        }
        if self.judge_score is not None:
            out["judge_score"] = self.judge_score
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def _data_text(name: str) -> str:
    return resources.files("steward.llm.evals").joinpath("data", name).read_text(encoding="utf-8")


def load_eval_set(path: str | Path | None = None) -> list[EvalItem]:
    """The eval set (default: the shipped ``stdlib_eval.jsonl``)."""
    text = Path(path).read_text(encoding="utf-8") if path else _data_text("stdlib_eval.jsonl")
    items = []
    for line in text.splitlines():
        if line.strip():
            r = json.loads(line)
            items.append(EvalItem(r["id"], r["question"], list(r["sources"]), r["reference"], bool(r.get("answerable", True))))
    return items


def load_thresholds(path: str | Path | None = None) -> dict[str, float]:
    """Metric floors (default: the shipped ``thresholds.yaml``)."""
    text = Path(path).read_text(encoding="utf-8") if path else _data_text("thresholds.yaml")
    data: dict[str, Any] = yaml.safe_load(text) or {}
    floors: dict[str, Any] = data.get("thresholds", data)
    return {str(k): float(v) for k, v in floors.items()}


def eval_modules(items: list[EvalItem]) -> list[str]:
    """The stdlib modules the eval set's gold sources come from (for a restricted corpus)."""
    mods = {s.split("#", 1)[0].removeprefix("stdlib:") for it in items for s in it.sources if s.startswith("stdlib:")}
    return sorted(mods)


def check_thresholds(report: EvalReport, thresholds: dict[str, float]) -> list[str]:
    """Failures as ``metric value < floor`` strings (empty when every floor holds)."""
    got = report.metrics()
    fails = []
    for name, floor in sorted(thresholds.items()):
        if name not in got:
            if name == "judge_score":
                continue  # only measured in judge mode
            fails.append(f"{name}: not measured")
        elif got[name] < floor:
            fails.append(f"{name} {got[name]:.3f} < {floor:.3f}")
    return fails


def _calibrate(pos: list[float], neg: list[float]) -> float:
    """The threshold with the best balanced accuracy (answer when confidence >= threshold)."""
    if not pos or not neg:
        return 0.0
    best_t, best_acc = 0.0, -1.0
    for t in sorted(set(pos + neg)):
        acc = (sum(p >= t for p in pos) / len(pos) + sum(n < t for n in neg) / len(neg)) / 2
        if acc > best_acc:
            best_t, best_acc = t, acc
    # midpoint between the chosen score and the highest negative below it: less brittle
    below = [n for n in neg if n < best_t]
    return round((best_t + max(below)) / 2, 3) if below else round(best_t, 3)


_JUDGE = (
    "You grade an answer to a question about the Python standard library against a reference answer. "
    "Judge correctness and support only, not length or style. Reply with a single digit from 1 (wrong) to 5 (fully correct)."
)


def _judge(ws: Workspace, alias: str, item: EvalItem, answer: str) -> float | None:
    messages = [
        {"role": "system", "content": _JUDGE},
        {
            "role": "user",
            "content": f"Reference answer:\n{item.reference}\n\nQuestion:\n{item.question}\n\nAnswer to grade:\n{answer}\n\nScore (1-5):",
        },
    ]
    m = re.search(r"[1-5]", generate(ws, alias, messages))
    return float(m.group(0)) if m else None


def run_eval(
    ws: Workspace,
    *,
    collection: str | None = None,
    k: int | None = None,
    items: list[EvalItem] | None = None,
    judge: bool = False,
    judge_model: str | None = None,
    ingest_first: bool = True,
) -> EvalReport:
    """Run the eval set through retrieval and answering, and score it.

    Args:
        ws: The workspace (its collection is ingested first unless ``ingest_first`` is false).
        collection: Default ``llm.rag.default_collection``.
        k: Retrieval depth for recall and MRR; default ``llm.rag.top_k``.
        items: Default the shipped eval set.
        judge: Also grade answers with an LLM judge through the gateway.
        judge_model: Gateway alias of the judge; default ``llm.rag.model``.
    """
    import numpy as np

    t0 = time.perf_counter()
    rag = ws.spec.llm.rag
    name = collection or rag.default_collection
    k = k or rag.top_k
    items = items if items is not None else load_eval_set()
    if ingest_first:
        ingest(ws, name)
    answers: list[Answer] = []
    results: list[ItemResult] = []
    for it in items:
        # guard=False: the eval measures the RAG pipeline; guardrails have their own eval.
        ans = ask(ws, it.question, k=k, collection=name, guard=False)
        answers.append(ans)
        got = [h.source for h in ans.retrieved]
        rank = next((i + 1 for i, s in enumerate(got) if s in set(it.sources)), None)
        faith = None
        if not ans.abstained:
            sents = [s for s in split_sentences(ans.text) if len(s.split()) >= 3]
            cited = sorted({int(m) for m in re.findall(r"\[(\d+)\]", ans.text) if 1 <= int(m) <= len(ans.retrieved)})
            ctx = [ans.retrieved[n - 1].text for n in cited]
            faith = sum(supported(sents, ctx)) / len(sents) if sents and ctx else 0.0
        results.append(ItemResult(it.id, it.question, ans.text, it.answerable, ans.abstained, ans.confidence, rank, faith, None, None, got))

    answered = [i for i, r in enumerate(results) if r.answerable and not r.abstained]
    if answered:
        emb = get_embedder().embed(
            [re.sub(r"\s*\[\d+\]", "", results[i].answer) for i in answered]
            + [items[i].question for i in answered]
            + [items[i].reference for i in answered]
        )
        n = len(answered)
        a, q, ref = emb[:n], emb[n : 2 * n], emb[2 * n :]
        for j, i in enumerate(answered):
            results[i].relevance = float(a[j] @ q[j])
            results[i].reference_similarity = float(a[j] @ ref[j])

    judge_score = None
    alias = judge_model or rag.model
    if judge and alias:
        scores = []
        for i in answered:
            s = _judge(ws, alias, items[i], results[i].answer)
            results[i].judge_score = s
            if s is not None:
                scores.append(s)
        judge_score = float(np.mean(scores)) if scores else None

    pos = [r for r in results if r.answerable]
    neg = [r for r in results if not r.answerable]

    def mean(xs: list[float]) -> float:
        return float(np.mean(xs)) if xs else 0.0

    report = EvalReport(
        items=len(results),
        answerable=len(pos),
        k=k,
        recall_at_k=mean([1.0 if r.rank is not None else 0.0 for r in pos]),
        mrr=mean([1.0 / r.rank if r.rank else 0.0 for r in pos]),
        faithfulness=mean([r.faithfulness for r in results if r.faithfulness is not None]),
        answer_relevance=mean([r.relevance for r in pos if r.relevance is not None]),
        reference_similarity=mean([r.reference_similarity for r in pos if r.reference_similarity is not None]),
        answer_rate=mean([0.0 if r.abstained else 1.0 for r in pos]),
        abstain_rate=mean([1.0 if r.abstained else 0.0 for r in neg]),
        suggested_min_score=_calibrate([r.confidence for r in pos], [r.confidence for r in neg]),
        min_score=rag.min_score,
        seconds=time.perf_counter() - t0,
        judge_score=judge_score,
        results=results,
    )
    logger.info("eval: recall@%d %.3f, MRR %.3f, faithfulness %.3f", k, report.recall_at_k, report.mrr, report.faithfulness)
    return report
