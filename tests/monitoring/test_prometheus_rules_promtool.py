"""The rules `steward monitor rules` prints pass `promtool check rules` and fire as intended (`promtool test rules`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from steward.monitoring import prometheus_rules
from steward.spec import MonitorPolicySpec, SloSpec
from steward.workspace import Workspace


def _promtool() -> str:
    """promtool's path, or skip (fail under CI=true, as the deploy checks do) when it is absent."""
    path = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if path:
        return path
    reason = "promtool (Debian package 'prometheus') is not installed"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: rule checks must run)")
    pytest.skip(reason)


def _rules_file(ws: Workspace, tmp_path: Path) -> Path:
    mspec = ws.spec.monitoring
    # every kind of policy and SLO the generator knows, names with dashes included
    mspec.policies.append(
        MonitorPolicySpec(name="slo-burn-strict", on="slo", detector="latency", threshold=2.0, warn=0.5, action="rollback")
    )
    mspec.slos.append(SloSpec(name="quality", sli="quality", objective=0.9, metric="accuracy"))
    path = tmp_path / "steward-rules.yaml"
    path.write_text(yaml.safe_dump(prometheus_rules(ws.spec), sort_keys=False), encoding="utf-8")
    return path


def test_generated_rules_pass_promtool_check(monitor_ws: Workspace, tmp_path: Path) -> None:
    promtool = _promtool()
    path = _rules_file(monitor_ws, tmp_path)
    check = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    n = len(yaml.safe_load(path.read_text())["groups"][0]["rules"])
    assert re.search(rf"SUCCESS: {n} rules found", check.stdout + check.stderr), check.stdout + check.stderr


def test_generated_rules_fire_on_burn_and_breach(monitor_ws: Workspace, tmp_path: Path) -> None:
    promtool = _promtool()
    path = _rules_file(monitor_ws, tmp_path)
    tests = {
        "rule_files": [path.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # the 1h window burns at 20x, the 5m one at 7x: no page; 6h/30m at 7x and 8x > 6x: a ticket
                    {"series": 'steward_slo_burn_rate{model="flights",slo="latency",window="1h"}', "values": "20x10"},
                    {"series": 'steward_slo_burn_rate{model="flights",slo="latency",window="5m"}', "values": "7x10"},
                    {"series": 'steward_slo_burn_rate{model="flights",slo="latency",window="6h"}', "values": "7x10"},
                    {"series": 'steward_slo_burn_rate{model="flights",slo="latency",window="30m"}', "values": "8x10"},
                    {"series": 'steward_monitor_policy_status{model="flights",policy="feature_drift"}', "values": "0 0 2x8"},
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "StewardLatencyFastBurn", "exp_alerts": []},
                    {
                        "eval_time": "5m",
                        "alertname": "StewardLatencySlowBurn",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "ticket", "model": "flights", "slo": "latency", "window": "6h"},
                                "exp_annotations": {
                                    "summary": "SLO latency burns its error budget 6x too fast (6h/30m)",
                                    "runbook_url": "docs/runbooks/slo-burn.md",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "5m",
                        "alertname": "StewardFeatureDrift",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "ticket", "action": "retrain", "model": "flights"},
                                "exp_annotations": {
                                    "summary": "policy feature_drift: psi on features (dep_delay, carrier) at or above 0.2",
                                    "runbook_url": "docs/runbooks/feature-drift.md",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "steward-rules-test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    run = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
