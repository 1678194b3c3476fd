"""User YAML is read strictly: duplicate keys are refused with both lines named; syntax errors name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward._yaml import DuplicateKey, loads_strict, read_yaml
from steward.errors import ContractError, SpecError


def test_duplicate_top_level_and_nested_keys_are_refused() -> None:
    with pytest.raises(DuplicateKey) as top:
        loads_strict("project: a\nserving: {}\nproject: b\n")
    assert top.value.key == "project" and (top.value.first_line, top.value.second_line) == (1, 3)
    with pytest.raises(DuplicateKey) as nested:
        loads_strict("serving:\n  models:\n    m: {}\n    m: {}\n")
    assert nested.value.key == "m" and nested.value.second_line == 4


def test_valid_yaml_and_merge_keys_still_load() -> None:
    assert loads_strict("a: 1\nb: [1, 2]\nc: {d: e}\n") == {"a": 1, "b": [1, 2], "c": {"d": "e"}}
    assert loads_strict("base: &b {x: 1}\none:\n  <<: *b\n  y: 2\n") == {"base": {"x": 1}, "one": {"x": 1, "y": 2}}


def test_read_yaml_maps_problems_to_the_callers_error(tmp_path: Path) -> None:
    dup = tmp_path / "steward.yaml"
    dup.write_text("project: a\nproject: b\n")
    with pytest.raises(SpecError) as info:
        read_yaml(dup, SpecError, "spec")
    assert info.value.code == "spec.duplicate_key" and "line 2 (first at line 1)" in info.value.message
    bad = tmp_path / "c.yaml"
    bad.write_text("columns:\n  - name: x\n   type: int\n")
    with pytest.raises(ContractError) as syntax:
        read_yaml(bad, ContractError, "contract")
    assert syntax.value.code == "contract.yaml" and "line 3" in syntax.value.message
