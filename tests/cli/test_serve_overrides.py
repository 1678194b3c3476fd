"""``steward serve``'s command-line choices reach the served spec as one validated copy (the spec is frozen)."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward.cli.serve_cmds import _apply_overrides
from steward.errors import SpecError
from steward.spec import load_spec
from steward.workspace import Workspace

SPEC = """\
project: serve-overrides
serving:
  poll_interval_s: 5
  models:
    flights:
      alias: champion
      entity_keys: [carrier]
      rollout: {mode: canary, steps: [10, 100]}
"""


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    (tmp_path / "steward.yaml").write_text(SPEC)
    return Workspace(load_spec(tmp_path / "steward.yaml"))


def test_model_refs_and_flags_make_one_copy_and_leave_the_loaded_spec_alone(ws: Workspace) -> None:
    loaded = ws.spec
    _apply_overrides(ws, {"models": ["flights@challenger", "other"], "poll_interval_s": 0, "access_log": False, "monitor": False})
    served = ws.spec.serving
    assert served.models["flights"].alias == "challenger"
    assert served.models["flights"].entity_keys == ["carrier"] and served.models["flights"].rollout is not None  # kept
    assert served.models["other"].alias == "champion"
    assert (served.poll_interval_s, served.access_log, ws.spec.monitoring.schedule.enabled) == (0.0, False, False)
    # the spec the workspace was opened with is untouched
    assert set(loaded.serving.models) == {"flights"} and loaded.serving.models["flights"].alias == "champion"
    assert (loaded.serving.poll_interval_s, loaded.serving.access_log, loaded.monitoring.schedule.enabled) == (5.0, True, True)


def test_no_overrides_keep_the_same_spec_and_a_bad_one_changes_nothing(ws: Workspace) -> None:
    loaded = ws.spec
    _apply_overrides(ws, {})
    assert ws.spec is loaded
    with pytest.raises(SpecError, match="poll_interval_s"):
        _apply_overrides(ws, {"models": ["other"], "poll_interval_s": -1})
    assert ws.spec is loaded and set(ws.spec.serving.models) == {"flights"}
