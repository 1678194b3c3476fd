"""Every alert rule has a runbook with the four sections an on-call person needs."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("## What it means", "## How to confirm", "## What to do", "## How to roll back")


def _alerts() -> list[dict[str, object]]:
    doc = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yaml").read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_rule_links_an_existing_runbook_with_all_sections() -> None:
    alerts = _alerts()
    assert len(alerts) >= 5
    for rule in alerts:
        url = rule["annotations"]["runbook_url"]  # type: ignore[index]
        path = ROOT / str(url)
        assert path.exists(), f"{rule['alert']}: runbook {url} is missing"
        text = path.read_text()
        assert text.startswith(f"# {rule['alert']}"), f"{url} must be titled with its alert"
        for section in SECTIONS:
            assert section in text, f"{url} lacks '{section}'"


def test_monitoring_policy_runbooks_exist() -> None:
    from steward.examples import example_dir
    from steward.spec import load_spec

    spec = load_spec(example_dir("flights") / "steward.yaml")
    for policy in spec.monitoring.policies:
        assert policy.runbook
        assert (ROOT / policy.runbook).exists(), policy.runbook
