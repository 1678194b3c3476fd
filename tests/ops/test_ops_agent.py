"""The agent's role ceiling: a run gets its caller's role or a lower one, never a higher one."""

from __future__ import annotations

import pytest

from steward import ops
from steward.errors import Forbidden, ValidationFailed
from steward.governance.access import Principal


def test_a_run_never_gets_more_than_its_caller() -> None:
    op = Principal("ci-bot", "operator")
    assert ops.agent_role(op) == "operator"
    assert ops.agent_role(op, "viewer") == "viewer"
    assert ops.agent_role(Principal("root", "admin"), "admin") == "admin"
    with pytest.raises(Forbidden) as high:
        ops.agent_role(op, "admin")
    assert high.value.code == "agent.role_too_high" and "ci-bot" in high.value.message
    with pytest.raises(ValidationFailed) as unknown:
        ops.agent_role(op, "root")
    assert unknown.value.details["errors"][0]["field"] == "role"
