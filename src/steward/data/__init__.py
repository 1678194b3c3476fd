"""The data stage: the Delta lake, contracts, ingest, the bronze → silver pipeline, quarantine and streams.

Typical use::

    from steward.data import run_pipeline
    report = run_pipeline(ws, sources=["flights"], date_from=date(2013, 1, 1), date_to=date(2013, 1, 31))
    report.totals            # rows_read == rows_silver + rows_quarantined + rows_duplicate
    report.refs()            # ["bronze.flights@4", "quarantine.flights@3", "silver.flights@4"]

Names are imported lazily so that importing one submodule (``steward.data.lake``)
does not pull in the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steward.data.contracts import CheckResult, Contract, check_contract, diff_contracts, load_contract
    from steward.data.faults import fault
    from steward.data.ingest import IngestReport, LandedBatch, ingest_source, landing_files
    from steward.data.lake import Lake, TableRef, with_retries
    from steward.data.pipeline import Accounting, BatchAccounting, PipelineReport, SourceReport, promote_source, run_pipeline
    from steward.data.quarantine import quarantine_counts, read_quarantine
    from steward.data.runs import get_run, list_runs
    from steward.data.streams import StreamReport, consume_stream, publish

__all__ = [
    "Accounting",
    "BatchAccounting",
    "CheckResult",
    "Contract",
    "IngestReport",
    "Lake",
    "LandedBatch",
    "PipelineReport",
    "SourceReport",
    "StreamReport",
    "TableRef",
    "check_contract",
    "consume_stream",
    "diff_contracts",
    "fault",
    "get_run",
    "ingest_source",
    "landing_files",
    "list_runs",
    "load_contract",
    "promote_source",
    "publish",
    "quarantine_counts",
    "read_quarantine",
    "run_pipeline",
    "with_retries",
]

_WHERE = {
    "CheckResult": "contracts",
    "Contract": "contracts",
    "check_contract": "contracts",
    "diff_contracts": "contracts",
    "load_contract": "contracts",
    "fault": "faults",
    "Accounting": "pipeline",
    "BatchAccounting": "pipeline",
    "PipelineReport": "pipeline",
    "SourceReport": "pipeline",
    "promote_source": "pipeline",
    "run_pipeline": "pipeline",
    "IngestReport": "ingest",
    "LandedBatch": "ingest",
    "ingest_source": "ingest",
    "landing_files": "ingest",
    "Lake": "lake",
    "TableRef": "lake",
    "with_retries": "lake",
    "quarantine_counts": "quarantine",
    "read_quarantine": "quarantine",
    "get_run": "runs",
    "list_runs": "runs",
    "StreamReport": "streams",
    "consume_stream": "streams",
    "publish": "streams",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'steward.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"steward.data.{module}"), name)
