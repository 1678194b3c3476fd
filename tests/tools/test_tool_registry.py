"""The tool registry: schemas, permissions per role, argument validation and the read tools on a real project."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from steward.errors import Forbidden, NotFound, ValidationFailed
from steward.tools import ROLE_PERMISSIONS, Tool, ToolContext, ToolParams, ToolRegistry, default_registry, tools_for_role
from steward.workspace import Workspace, open_workspace


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    (tmp_path / "steward.yaml").write_text("project: tools\n")
    w = open_workspace(tmp_path)
    yield w
    w.close()


def test_every_tool_has_a_strict_schema_and_a_permission() -> None:
    reg = default_registry()
    names = {t.name for t in reg.all()}
    assert {"list_models", "rollout_status", "drift_report", "metrics_summary", "audit_search", "docs_search"} <= names
    assert {"propose_rollback", "propose_retrain", "rollback_model", "promote_model", "start_retrain"} <= names
    for t in reg.all():
        schema = t.openai_schema()
        assert schema["function"]["name"] == t.name and schema["function"]["description"].startswith(f"[{t.permission}]")
        params = schema["function"]["parameters"]
        assert params["type"] == "object" and params["additionalProperties"] is False
        assert all("description" in p for p in params["properties"].values()), t.name
    assert {t.permission for t in reg.all() if t.name.startswith("propose_")} == {"propose"}
    assert {t.name for t in reg.all() if t.permission == "write"} == {"rollback_model", "promote_model", "start_retrain"}


def test_allow_lists_grow_with_the_role() -> None:
    viewer = {t.name for t in tools_for_role("viewer")}
    operator = {t.name for t in tools_for_role("operator")}
    admin = {t.name for t in tools_for_role("admin")}
    assert viewer < operator < admin
    assert all(default_registry().get(n).permission == "read" for n in viewer)
    assert "rollback_model" in admin and "rollback_model" not in operator
    assert ROLE_PERMISSIONS["operator"] == {"read", "propose"}
    with pytest.raises(ValidationFailed):
        tools_for_role("root")


def test_arguments_are_validated(ws: Workspace) -> None:
    reg = default_registry()
    ctx = ToolContext("t", "viewer")
    with pytest.raises(ValidationFailed) as unknown:
        reg.run(ws, "drift_report", {"model": "m", "role": "admin"}, ctx)
    assert unknown.value.code == "tool.invalid_arguments" and unknown.value.details["errors"][0]["field"] == "role"
    with pytest.raises(ValidationFailed):
        reg.run(ws, "drift_report", {"model": "m; DROP TABLE audit_log"}, ctx)
    with pytest.raises(ValidationFailed):
        reg.run(ws, "audit_search", {"limit": 10_000}, ctx)
    with pytest.raises(Forbidden):
        reg.run(ws, "rollback_model", {"model": "m", "reason": "because"}, ctx)
    with pytest.raises(NotFound):
        reg.run(ws, "no_such_tool", {}, ctx)
    tool = reg.get("promote_model")
    assert tool.canonical_arguments({"reason": "ok go", "version": 2, "model": "m"}) == {"model": "m", "version": 2, "reason": "ok go"}


def test_read_tools_on_a_fresh_project(ws: Workspace) -> None:
    reg = default_registry()
    ctx = ToolContext("t", "viewer")
    ws.audit.append("registry.alias", "model:m@2", actor="alice", model="m", details={"reason": "promoted"})
    ws.audit.append("ingest.batch", "table:silver.flights", actor="bob")
    found = reg.run(ws, "audit_search", {"model": "m"}, ctx)
    assert [e["action"] for e in found["entries"]] == ["registry.alias"]
    assert [e["actor"] for e in reg.run(ws, "audit_search", {"text": "silver"}, ctx)["entries"]] == ["user:bob"]
    assert reg.run(ws, "rollout_status", {"model": "m"}, ctx)["rollout"] is None
    drift = reg.run(ws, "drift_report", {"model": "m"}, ctx)
    assert drift["verdicts"] == [] and drift["latest_status"] is None
    summary = reg.run(ws, "metrics_summary", {}, ctx)
    assert summary["active_rollouts"] == [] and summary["latest_monitor_status"] == {}
    assert "llm_spend" in summary


def test_drift_report_reads_recorded_verdicts(ws: Workspace) -> None:
    md = ws.metadata
    md.execute(
        "INSERT INTO monitor_verdicts (verdict_id, model, version, window_start, window_end, n_rows, status, created_at, details) "
        "VALUES ('v1', 'm', '2', NULL, NULL, 900, 'drift', '2026-01-01T00:00:00+00:00', '{}')"
    )
    md.execute(
        "INSERT INTO monitor_checks (verdict_id, seq, policy, target, detector, column_name, value, statistic, threshold, warn, direction, "
        "status, n_reference, n_window) VALUES ('v1', 0, 'features', 'features', 'psi', 'wind_speed', 0.4, 0.4, 0.2, NULL, 'above', 'fail', 100, 900)"
    )
    out = default_registry().run(ws, "drift_report", {"model": "m"}, ToolContext("t", "viewer"))
    assert out["latest_status"] == "drift"
    assert [c["column_name"] for c in out["flagged_checks"]] == ["wind_speed"]
    summary = default_registry().run(ws, "metrics_summary", {}, ToolContext("t", "viewer"))
    assert summary["latest_monitor_status"] == {"m": "drift"}


def test_custom_registry_rejects_duplicates() -> None:
    class P(ToolParams):
        x: int = 1

    t = Tool("echo", "Echo.", "read", P, lambda ws, p, ctx: {"x": p.x})
    reg = ToolRegistry([t])
    with pytest.raises(ValueError):
        reg.register(t)
    assert reg.run(None, "echo", {"x": 3}, ToolContext("t", "viewer")) == {"x": 3}  # type: ignore[arg-type]


def test_docs_search_only_reads_declared_collections(ws: Workspace) -> None:
    with pytest.raises(NotFound):
        default_registry().run(ws, "docs_search", {"query": "rotate keys", "collection": "secrets"}, ToolContext("t", "viewer"))
    with pytest.raises(ValidationFailed):
        default_registry().run(ws, "docs_search", {"query": "x" * 600}, ToolContext("t", "viewer"))
