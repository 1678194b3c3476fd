"""Shared helpers for the ingest / pipeline / stream / crash tests (a small project with source ``events``)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from steward.data.pipeline import Accounting, PipelineReport
from steward.spec import load_spec
from steward.workspace import Workspace

CONTRACT = """\
name: events
version: "1.0"
key: [id]
event_time: ts
columns:
  id: {type: int64}
  ts: {type: datetime}
  amount: {type: float64, min: 0}
  kind: {type: string, allowed: [a, b]}
"""

HEADER = "id,ts,amount,kind"


def open_project(project_dir: Path, contract: str = CONTRACT) -> Workspace:
    """Write the events contract into the ``project_dir`` fixture project and open it."""
    (project_dir / "contracts" / "events.yaml").write_text(contract)
    return Workspace(load_spec(project_dir))


def drop(project_dir: Path, name: str, lines: list[str], header: str | None = HEADER, source: str = "events") -> Path:
    """Write a landing file."""
    d = project_dir / "landing" / source
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    body = ([header] if header is not None else []) + lines
    p.write_text("\n".join(body) + "\n")
    return p


def row(i: int, day: str, amount: object = 1.0, kind: str = "a", hour: int = 10) -> str:
    """One CSV data line for the events contract."""
    return f"{i},{day}T{hour:02d}:00:00Z,{amount},{kind}"


def assert_balanced(report: PipelineReport) -> Accounting:
    """Every batch and the totals satisfy rows_read = silver + quarantined + duplicates."""
    for b in report.batches:
        assert b.rows_read == b.rows_silver + b.rows_quarantined + b.rows_duplicate, b
    t = report.totals
    assert t.rows_read == t.rows_silver + t.rows_quarantined + t.rows_duplicate
    return t


def lake_state(ws: Workspace, source: str = "events") -> dict[str, int | None]:
    """Latest version of each table of a source (None when absent)."""
    out: dict[str, int | None] = {}
    for layer in ("bronze", "silver", "quarantine"):
        ref = f"{layer}.{source}"
        out[layer] = ws.lake.version(ref) if ws.lake.exists(ref) else None
    return out


def silver(ws: Workspace, source: str = "events") -> pl.DataFrame:
    """The silver table sorted by id."""
    return ws.lake.read(f"silver.{source}").sort("id")
