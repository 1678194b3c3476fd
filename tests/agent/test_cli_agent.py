"""``steward agent "task"``, ``steward agent approve`` and ``steward agent eval`` through the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from agent_helpers import agent_doc
from typer.testing import CliRunner

from steward.cli.app import app
from steward.llm.agent.scripted import ScriptedServer

runner = CliRunner()


def test_agent_cli_run_approve_and_eval(tmp_path: Path, scripted: ScriptedServer) -> None:
    (tmp_path / "steward.yaml").write_text(yaml.safe_dump(agent_doc(scripted.url)))
    spec = ["--spec", str(tmp_path)]

    r = runner.invoke(app, [*spec, "agent", "Show the drift report for model flights_delay.", "--json"])
    assert r.exit_code == 0, r.output
    run = json.loads(r.output)
    assert run["status"] == "completed" and run["steps"][0]["calls"][0]["tool"] == "drift_report"

    r = runner.invoke(app, [*spec, "agent", "run", "Retrain flights_delay because weather drifted.", "--role", "admin"])
    assert r.exit_code == 10, r.output  # stopped for an approval
    request_id = re.search(r"steward agent approve (\w+)", r.output)
    assert request_id, r.output
    r = runner.invoke(app, [*spec, "agent", "approvals", "--json"])
    assert [a["request_id"] for a in json.loads(r.output)] == [request_id.group(1)]
    r = runner.invoke(app, [*spec, "agent", "approve", request_id.group(1)])
    assert r.exit_code == 0 and re.search(r"one-time token \(shown once\): sap_\S+", r.output)

    r = runner.invoke(app, [*spec, "agent", "run", "Keep going", "--role", "root"])
    assert r.exit_code != 0

    r = runner.invoke(app, [*spec, "agent", "eval", "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["n_tasks"] >= 20 and report["task_success"] == 1.0
