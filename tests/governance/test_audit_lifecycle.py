"""Ingest batches and contract changes land in the audit trail."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from steward.data import run_pipeline
from steward.errors import ValidationFailed
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


def test_cli_anchor_then_verify_against_it_catches_truncation_behind_rewritten_heads(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from steward.cli.app import app

    spec_path = init_project(tmp_path / "proj", "flights")
    ws = open_workspace(spec_path)
    for i in range(4):
        ws.audit.append("registry.alias", f"model:m@{i}", actor="tester", model="m")
    ws.close()
    runner = CliRunner()
    env = {"STEWARD_SPEC": str(spec_path)}
    printed = runner.invoke(app, ["--spec", str(spec_path), "audit", "anchor"], env=env)
    assert printed.exit_code == 0, printed.output
    anchor = printed.output.strip().splitlines()[-1]
    ok = runner.invoke(app, ["--spec", str(spec_path), "audit", "verify", "--anchor", anchor], env=env)
    assert ok.exit_code == 0 and "external anchor" in ok.output

    ws = open_workspace(spec_path)
    ws.audit.store.execute("DELETE FROM audit_log WHERE seq > 2")
    last = ws.audit.entries()[-1]
    ws.audit.store.execute("UPDATE audit_head SET seq = ?, hash = ?", (last.seq, last.hash))
    assert ws.audit.anchor_path is not None
    ws.audit.anchor_path.write_text(f"{last.seq} {last.hash}\n")
    ws.close()
    bad = runner.invoke(app, ["--spec", str(spec_path), "audit", "verify", "--anchor", anchor], env=env)
    assert bad.exit_code == 12
    assert "entries were removed" in " ".join(bad.output.split())
    garbled = runner.invoke(app, ["--spec", str(spec_path), "audit", "verify", "--anchor", "nonsense"], env=env)
    # the entry point (steward.cli.app.main) turns this StewardError into one red line and exit 2
    assert isinstance(garbled.exception, ValidationFailed) and garbled.exception.code == "audit.bad_anchor"
