"""Ingest batches and contract changes land in the audit trail."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from steward.data import run_pipeline
from steward.examples.lander import land
from steward.project import init_project
from steward.workspace import open_workspace


def test_batches_and_contract_changes_are_audited(tmp_path: Path) -> None:
    spec_path = init_project(tmp_path / "proj", "flights")
    ws = open_workspace(spec_path)
    land(ws.spec.resolve("landing"), date(2013, 1, 1), date(2013, 1, 2))
    report = run_pipeline(ws, sources=["flights"])
    batches = ws.audit.entries(action="ingest.batch")
    assert len(batches) == len(report.batches) == 2
    acc = batches[0].payload["outputs"]["accounting"]["value"]
    assert acc["rows_read"] == acc["rows_silver"] + acc["rows_quarantined"] + acc["rows_duplicate"]
    assert [e.action for e in ws.audit.entries(action="contract.")] == ["contract.register"]

    run_pipeline(ws, sources=["flights"])  # nothing new: no new batch entries, contract unchanged
    assert len(ws.audit.entries(action="ingest.batch")) == 2
    assert len(ws.audit.entries(action="contract.")) == 1

    contract = ws.spec.contract_path("flights")
    contract.write_text(contract.read_text().replace("version:", "# edited\nversion:", 1))
    run_pipeline(ws, sources=["flights"])
    changes = ws.audit.entries(action="contract.")
    assert [e.action for e in changes] == ["contract.register", "contract.change"]
    assert changes[1].payload["inputs"]["previous_sha256"]["value"] == changes[0].payload["outputs"]["contract"]["sha256"]
    assert ws.audit.verify().ok
    ws.close()


def test_budget_settings_are_audited_once_and_on_change(tmp_path: Path) -> None:
    from steward.llm.gateway import Gateway

    spec = tmp_path / "steward.yaml"
    base = (
        "project: budgets\n"
        "llm:\n  gateway:\n    providers: {local: {kind: local}}\n    aliases: {chat: ['local:extractive']}\n"
        "    keys:\n      team-a: {key_env: STEWARD_TEST_KEY_A, budget: {usd: BUDGET, period: day}}\n"
    )
    spec.write_text(base.replace("BUDGET", "5.0"))
    ws = open_workspace(spec)
    Gateway(ws)
    Gateway(ws)  # same settings: nothing new
    assert [e.subject for e in ws.audit.entries(action="budget.")] == ["gateway-key:team-a"]
    ws.close()
    spec.write_text(base.replace("BUDGET", "7.5"))
    ws = open_workspace(spec)
    Gateway(ws)
    entries = ws.audit.entries(action="budget.")
    assert len(entries) == 2
    assert entries[1].payload["outputs"]["config"]["value"]["budget"]["usd"] == 7.5
    assert ws.audit.verify().ok
    ws.close()
