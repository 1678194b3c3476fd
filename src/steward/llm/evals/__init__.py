"""Evals for the LLM half: the RAG eval set over the standard library, its thresholds, the runner.

Usage::

    from steward.llm.evals import run_eval, load_thresholds, check_thresholds

    report = run_eval(ws)                 # ingests the collection if needed, then asks every question
    failures = check_thresholds(report, load_thresholds())
"""

from __future__ import annotations

from steward.llm.evals.runner import (
    EvalItem,
    EvalReport,
    ItemResult,
    check_thresholds,
    eval_modules,
    load_eval_set,
    load_thresholds,
    run_eval,
)

__all__ = ["EvalItem", "EvalReport", "ItemResult", "check_thresholds", "eval_modules", "load_eval_set", "load_thresholds", "run_eval"]
