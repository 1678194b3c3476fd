"""The offline RAG eval as a CI gate: every metric must stay at or above ``thresholds.yaml``.

The corpus is restricted to the 15 standard-library modules the eval set covers
(ingested once per session by the ``stdlib_eval_ws`` fixture), which keeps the
run well under a minute and a half on 2 cores, embedding included.
"""

from __future__ import annotations

from typing import Any

from steward.llm.evals import check_thresholds, eval_modules, load_eval_set, load_thresholds, run_eval
from steward.llm.rag import vector_store


def test_eval_set_is_well_formed(stdlib_eval_ws: Any) -> None:
    items = load_eval_set()
    answerable = [it for it in items if it.answerable]
    assert len(answerable) >= 60 and len({it.id for it in items}) == len(items)
    assert all(it.sources and it.reference for it in answerable)
    # gold sections exist in the corpus under ids that are stable across ingests
    stored = {f"{r.doc_id}#{r.section}" for r in vector_store(stdlib_eval_ws).records("stdlib")}
    missing = [s for it in answerable for s in it.sources if s not in stored]
    assert missing == []
    assert len(eval_modules(items)) == 15


def test_offline_eval_meets_thresholds(stdlib_eval_ws: Any) -> None:
    report = run_eval(stdlib_eval_ws)  # re-ingest first: a no-op, the corpus is unchanged
    floors = load_thresholds()
    assert {"recall_at_5", "mrr", "faithfulness", "answer_relevance"} <= set(floors)
    metrics = report.metrics()
    for name, floor in floors.items():
        assert metrics[name] >= floor, f"{name} {metrics[name]:.3f} < {floor}"
    assert check_thresholds(report, floors) == []
    assert report.items == len(load_eval_set()) and report.k == 5
    # the calibrated "I don't know" threshold separates the set: configured min_score is near it
    assert abs(report.suggested_min_score - stdlib_eval_ws.spec.llm.rag.min_score) < 0.15


def test_thresholds_fail_when_a_metric_drops(stdlib_eval_ws: Any) -> None:
    items = [it for it in load_eval_set() if it.answerable][:3]
    broken = [type(it)(it.id, it.question, ["stdlib:nowhere#nothing"], it.reference, True) for it in items]
    report = run_eval(stdlib_eval_ws, items=broken, ingest_first=False)
    assert report.recall_at_k == 0.0 and report.mrr == 0.0
    fails = check_thresholds(report, {"recall_at_5": 0.5, "mrr": 0.5})
    assert len(fails) == 2 and fails[0].startswith("mrr")
