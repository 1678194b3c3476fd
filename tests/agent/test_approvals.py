"""Write tools never run without a one-time approval bound to the exact call."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
import yaml
from _train_synth import make_frame, model_section, training_set
from agent_helpers import agent_doc

from steward.errors import Conflict, Forbidden
from steward.llm.agent import Agent, Approvals, ToolGate, call_hash
from steward.llm.agent.scripted import ScriptedServer
from steward.registry import get_alias_version, promote
from steward.registry.loader import MANIFEST_TAG
from steward.registry.versions import register_version
from steward.tools import ToolContext
from steward.training import train_model
from steward.workspace import Workspace, open_workspace

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def registry_ws(tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedServer) -> Workspace:
    """A project with a tiny real model: v2 is champion, v1 previous (so a rollback can run)."""
    name = f"appr_{uuid.uuid4().hex[:10]}"
    tmp_path = tmp_path_factory.mktemp("registry")
    doc = agent_doc(scripted.url, project=name, model=model_section(name=name, params={"n_estimators": 5, "num_leaves": 7}))
    doc["storage"] = {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    (tmp_path / "steward.yaml").write_text(yaml.safe_dump(doc))
    ws = open_workspace(tmp_path)
    result = train_model(ws, training_set(make_frame(600)))
    promote(ws, name, 1, reason="first", force=True)
    # a second version of the same logged model (training twice would only cost time)
    # same files, so v1's manifest: promotion verifies the artifacts, and a version without one cannot be served
    manifest = ws.model_registry.get_version(name, 1).tags[MANIFEST_TAG]
    register_version(ws, name=name, model_uri=f"models:/{name}/1", run_id=result.run_id, tags={MANIFEST_TAG: manifest})
    promote(ws, name, 2, reason="second", force=True)
    assert (get_alias_version(ws, name, "champion"), get_alias_version(ws, name, "previous")) == (2, 1)
    return ws


def test_registry_read_and_propose_tools(registry_ws: Workspace) -> None:
    ws = registry_ws
    name = ws.spec.model.name
    gate = ToolGate(ws)
    viewer = ToolContext("alice", "viewer")
    listed = gate.call("list_models", {"model": name}, viewer)
    assert listed.status == "ok", listed.error
    assert {(v["version"], tuple(v["aliases"])) for v in listed.result["versions"]} == {(2, ("champion",)), (1, ("previous",))}
    missing = gate.call("list_models", {"model": "no_such_model"}, viewer)
    assert (missing.status, missing.code) == ("error", "not_found")
    history = gate.call("alias_history", {"model": name, "limit": 2}, viewer)
    assert [c["reason"] for c in history.result["changes"]][-1].startswith("second")
    card = gate.call("model_card", {"model": name, "version": 1}, viewer)
    assert card.status == "ok" and card.result["card"]["model"] == name
    assert gate.call("propose_rollback", {"model": name, "reason": "slow"}, viewer).code == "tool.not_allowed"
    draft = gate.call("propose_rollback", {"model": name, "reason": "slow"}, ToolContext("bob", "operator"))
    assert draft.status == "ok"
    assert (draft.result["from_version"], draft.result["to_version"], draft.result["feasible"]) == (2, 1, True)
    assert draft.result["next_step"]["tool"] == "rollback_model"
    assert get_alias_version(ws, name, "champion") == 2  # a proposal changes nothing


async def test_write_needs_one_time_approval_for_the_exact_call(registry_ws: Workspace) -> None:
    ws = registry_ws
    name = ws.spec.model.name
    now = [time.time()]
    approvals = Approvals(ws, clock=lambda: now[0])
    agent = Agent(ws, gate=ToolGate(ws, approvals=approvals))
    task = f"Roll back {name} because latency doubled."
    args = {"model": name, "reason": "latency doubled"}

    # 1. no approval: refused, a pending request for this exact call is recorded, nothing changes
    run = await agent.run(task, role="admin", actor="alice")
    assert (run.status, run.stop_reason) == ("needs_approval", "approval_required")
    pending = approvals.get(run.pending_approval or "")
    assert (pending.status, pending.tool, pending.arguments) == ("pending", "rollback_model", args)
    assert pending.call_hash == call_hash("rollback_model", args)
    assert get_alias_version(ws, name, "champion") == 2

    # 2. a token granted for other arguments is refused
    other, _ = approvals.grant_call("rollback_model", {"model": name, "reason": "something else"}, admin="bob")
    run = await agent.run(task, role="admin", actor="alice", approval_tokens=[other])
    assert run.status == "needs_approval" and "bound to another call" in (run.calls[-1].error or "")
    assert get_alias_version(ws, name, "champion") == 2

    # 3. the right token, too late: refused
    token, granted = approvals.grant(pending.request_id, admin="bob")
    assert token not in str(ws.metadata.fetchall("SELECT * FROM agent_approvals"))  # stored hashed only
    now[0] = time.time() + ws.spec.llm.agent.approval_ttl_s + 1
    run = await agent.run(task, role="admin", actor="alice", approval_tokens=[token])
    assert run.status == "needs_approval" and "expired" in (run.calls[-1].error or "")
    assert get_alias_version(ws, name, "champion") == 2

    # 4. valid: runs once
    now[0] = time.time()
    run = await agent.run(task, role="admin", actor="alice", approval_tokens=[other, token])
    assert run.status == "completed", run.answer
    assert [(c.tool, c.status) for c in run.calls] == [("rollback_model", "ok")]
    assert get_alias_version(ws, name, "champion") == 1
    used = ws.audit.entries(action="agent.approval.used")
    assert len(used) == 1 and used[0].payload["details"]["granted_by"] == "user:bob"  # a bare name is a user

    # 5. the same token again: refused
    run = await agent.run(task, role="admin", actor="alice", approval_tokens=[token])
    assert run.status == "needs_approval" and "already used" in (run.calls[-1].error or "")
    assert approvals.get(granted.request_id).status == "used"
    assert ws.audit.verify().ok


async def test_operator_cannot_write_even_with_a_token(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws()
    approvals = Approvals(ws)
    token, _ = approvals.grant_call("start_retrain", {"model": "model", "reason": "drifted"}, admin="bob")
    gate = ToolGate(ws, approvals=approvals)
    out = gate.call("start_retrain", {"model": "model", "reason": "drifted"}, ToolContext("op", "operator"), approval_tokens=[token])
    assert (out.status, out.code) == ("refused", "tool.not_allowed")
    assert approvals.list("granted")  # the token was not spent by a refused caller


def test_approval_queue_rules(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws()
    approvals = Approvals(ws)
    args = {"model": "m", "reason": "x y z"}
    r1 = approvals.request("rollback_model", args, requested_by="agent:1")
    assert approvals.request("rollback_model", dict(reversed(list(args.items()))), requested_by="agent:2").request_id == r1.request_id
    token, _ = approvals.grant(r1.request_id, admin="admin")
    with pytest.raises(Conflict):
        approvals.grant(r1.request_id, admin="admin")
    with pytest.raises(Forbidden) as unknown:
        approvals.consume("sap_not-a-token", "rollback_model", args, actor="a")
    assert unknown.value.details["why"] == "unknown"
    with pytest.raises(Forbidden) as other:
        approvals.consume(token, "promote_model", args, actor="a")
    assert other.value.details["why"] == "other_call"
    assert approvals.consume(token, "rollback_model", args, actor="a").status == "used"
    with pytest.raises(Forbidden) as again:
        approvals.consume(token, "rollback_model", args, actor="a")
    assert again.value.details["why"] == "used"
    granted = ws.audit.entries(action="agent.approval.granted")
    assert granted and granted[0].actor == "user:admin" and token not in str(granted[0].payload)
