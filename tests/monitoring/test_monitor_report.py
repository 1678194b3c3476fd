"""The HTML report holds its plots inline and the JSON report parses, both built from recorded verdicts."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from monitor_helpers import NOW, flights_like, write_labels, write_log
from prometheus_client import CollectorRegistry

from steward import ops
from steward.loop import loop_history
from steward.monitoring import build_report, evaluate_policies, report_data
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


def test_report_marks_the_loops_outcomes(monitor_ws: Workspace, tmp_path: Path) -> None:
    from steward.loop._state import create_run, finish_run

    frame = flights_like(400, seed=24, shift=40.0, start=NOW - timedelta(hours=22), span=timedelta(hours=22))
    write_log(monitor_ws, frame)
    evaluate_policies(monitor_ws, "flights", now=NOW, registry=CollectorRegistry())
    md = monitor_ws.metadata
    ended = {}
    for i, (outcome, reason) in enumerate(
        [("promoted", "v2 passed the gate and the canary"), ("rolled_back", "canary breached its SLO"), ("champion_kept", "gate failed")]
    ):
        run = create_run(md, "flights", f"monitor:feature_drift:{i}", "steward-loop", {"challenger_version": i + 2})
        finish_run(md, run, outcome=outcome, reason=reason)
        ended[outcome] = (NOW + timedelta(hours=i + 1)).isoformat()
        md.execute("UPDATE loop_runs SET finished_at = ? WHERE loop_id = ?", (ended[outcome], run.loop_id))
    unfinished = create_run(md, "flights", "manual", "steward-loop", {})
    assert unfinished.finished_at is None

    # the loop sits above monitoring: its runs come in as an argument (steward.ops.monitor_report passes them)
    m = report_data(monitor_ws, model="flights", loop_runs=loop_history(monitor_ws, "flights"))["models"]["flights"]
    assert [r["outcome"] for r in m["loops"] if r["finished_at"]] == ["promoted", "rolled_back", "champion_kept"]
    loop_marks = [mk for mk in m["markers"] if mk["source"] == "loop"]
    assert [(mk["kind"], mk["at"]) for mk in loop_marks] == [(k, ended[k]) for k in ("promoted", "rolled_back", "champion_kept")]
    assert "canary breached its SLO" in loop_marks[1]["label"]
    # the monitor's own actions stay markers too
    assert {mk["kind"] for mk in m["markers"] if mk["source"] == "monitor"} == {a["action"] for a in m["actions"]} != set()
    assert report_data(monitor_ws, model="flights")["models"]["flights"]["loops"] == []  # without them: no loop section
    page = ops.monitor_report(monitor_ws, tmp_path / "out").html.read_text()
    assert "Loop runs" in page and "rolled_back" in page and "v2 passed the gate" in page
