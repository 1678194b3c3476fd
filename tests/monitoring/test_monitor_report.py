"""The HTML report holds its plots inline and the JSON report parses, both built from recorded verdicts."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from monitor_helpers import NOW, flights_like, write_labels, write_log
from prometheus_client import CollectorRegistry

from steward.monitoring import build_report, evaluate_policies
from steward.workspace import Workspace


def test_report_has_plots_and_json_with_actions(monitor_ws: Workspace, tmp_path: Path) -> None:
    # three daily passes: stable, stable, drifted (the drifted one triggers actions)
    for day, shift in ((3, 0.0), (2, 0.0), (1, 40.0)):
        now = NOW - timedelta(days=day - 1)
        frame = flights_like(400, seed=20 + day, shift=shift, start=now - timedelta(hours=22), span=timedelta(hours=22))
        write_log(monitor_ws, frame)
        write_labels(monitor_ws, frame)
        evaluate_policies(monitor_ws, "flights", now=now, registry=CollectorRegistry())
    paths = build_report(monitor_ws, tmp_path / "out")
    page = paths.html.read_text()
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]{200,})"', page)
    alts = [a for a, _ in images]
    assert "drift over time" in alts and "performance over time" in alts
    assert "distribution dep_delay" in alts and "distribution carrier" in alts and "distribution prediction" in alts
    assert "http://" not in page and "https://" not in page  # self-contained: nothing fetched at view time
    assert "docs/runbooks/feature-drift.md" in page
    data = json.loads(paths.json.read_text())
    m = data["models"]["flights"]
    assert len(m["history"]) == 3 and m["latest"]["status"] == "breach"
    assert {a["action"] for a in m["actions"]} >= {"retrain"}
    assert any(c["detector"] == "psi" and c["column_name"] == "dep_delay" for c in m["history"][0]["checks"])
    # quality over time comes from the labelled windows of each pass
    assert any(c["target"] == "performance" and c["value"] is not None for h in m["history"] for c in h["checks"])


def test_report_without_verdicts(monitor_ws: Workspace, tmp_path: Path) -> None:
    paths = build_report(monitor_ws, tmp_path)
    assert "No monitoring verdicts yet" in paths.html.read_text()
    assert json.loads(paths.json.read_text())["models"] == {}
