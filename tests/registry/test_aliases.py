"""Aliases: challenger on registration, promote (champion + previous), rollback, and who/when/why history."""

from __future__ import annotations

from pathlib import Path

import pytest
from _train_synth import make_frame, make_workspace, training_set

from steward.errors import Conflict, GateFailed, NotFound, ValidationFailed
from steward.registry import alias_history, get_alias_version, list_models, promote, rollback, run_gate
from steward.training import train_model


def test_promote_rollback_round_trip_with_history(
    tmp_path: Path, shared_tracking_uri: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"alias_{unique}"
    ws = make_workspace(
        tmp_path,
        project=name,
        tracking_uri=shared_tracking_uri,
        name=name,
        params={"n_estimators": 10, "num_leaves": 7},
        gate={"latency_p99_ms": 10_000, "latency_margin": 50, "latency_slack_ms": 50},  # identical models: only timer noise differs
    )
    frame = make_frame(1500)
    train_model(ws, training_set(frame))
    assert get_alias_version(ws, name, "challenger") == 1
    assert get_alias_version(ws, name, "champion") is None

    # the gate is blocking: no verdict, no promotion
    with pytest.raises(GateFailed, match="no gate verdict"):
        promote(ws, name, 1, reason="ship it")
    with pytest.raises(ValidationFailed):
        promote(ws, name, 1, reason="  ")
    with pytest.raises(NotFound):
        promote(ws, name, 9, reason="no such version")

    monkeypatch.setenv("STEWARD_ACTOR", "alice")
    assert run_gate(ws).passed
    promote(ws, name, 1, reason="first champion")
    assert get_alias_version(ws, name, "champion") == 1
    assert get_alias_version(ws, name, "challenger") is None  # promoted challengers drop the alias

    train_model(ws, training_set(frame, version=1))
    assert get_alias_version(ws, name, "challenger") == 2
    # a verdict against an older champion is stale
    ws.metadata.execute(
        "INSERT INTO gate_verdicts (verdict_id, model_name, challenger_version, champion_version, run_id, passed, checks, actor, created_at) "
        "VALUES ('stale', ?, 2, NULL, 'r', 1, '[]', 'x', '2000-01-01')",
        (name,),
    )
    with pytest.raises(GateFailed, match="gated against"):
        promote(ws, name, 2, reason="stale verdict")
    assert run_gate(ws).champion_version == 1
    promote(ws, name, 2, reason="v2 is better", actor="bob")
    assert get_alias_version(ws, name, "champion") == 2
    assert get_alias_version(ws, name, "previous") == 1
    with pytest.raises(Conflict):
        promote(ws, name, 2, reason="again")

    rollback(ws, name, reason="p99 latency SLO breached")
    assert get_alias_version(ws, name, "champion") == 1
    assert get_alias_version(ws, name, "previous") is None
    with pytest.raises(Conflict, match="no previous"):
        rollback(ws, name, reason="nothing left")
    promote(ws, name, 2, reason="fixed upstream", force=True)
    assert get_alias_version(ws, name, "champion") == 2 and get_alias_version(ws, name, "previous") == 1

    hist = alias_history(ws, name)
    moves = [(h.alias, h.from_version, h.to_version, h.action, h.actor) for h in hist]
    assert moves[0][:4] == ("challenger", None, 1, "register")
    # actors in the one grammar: $STEWARD_ACTOR=alice and actor="bob" are the users user:alice and user:bob
    assert ("champion", None, 1, "promote", "user:alice") in moves
    assert ("previous", None, 1, "promote", "user:bob") in moves
    assert ("champion", 1, 2, "promote", "user:bob") in moves
    assert ("champion", 2, 1, "rollback", "user:alice") in moves
    assert ("previous", 1, None, "rollback", "user:alice") in moves
    reasons = {h.reason for h in hist}
    assert {"first champion", "v2 is better", "p99 latency SLO breached", "fixed upstream (forced past the gate)"} <= reasons
    assert all(h.created_at.startswith("20") for h in hist)
    assert [h.created_at for h in hist] == sorted(h.created_at for h in hist)

    # every alias change, gate and training run is also in the hash-chained audit trail
    audited = ws.audit.entries(model=name, action="registry.alias")
    assert len(audited) == len(hist)
    assert {e.actor for e in audited} == {h.actor for h in hist}
    assert len(ws.audit.entries(model=name, action="registry.gate")) == 2
    assert len(ws.audit.entries(model=name, action="training.run")) == 2
    assert ws.audit.verify().ok

    listed = {m.version: m for m in list_models(ws, name)}
    assert listed[2].aliases == ["champion"] and listed[1].aliases == ["previous"]
    assert listed[1].gate == "passed" and listed[2].metric == "roc_auc" and listed[2].metric_value is not None
