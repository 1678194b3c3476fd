"""Contract diff: every change kind classified as compatible or breaking."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from steward.data.contracts import diff_contracts, parse_contract

OLD: dict[str, Any] = {
    "name": "t",
    "version": "1.0.0",
    "key": ["id"],
    "event_time": "ts",
    "columns": {
        "id": {"type": "int64"},
        "ts": {"type": "datetime"},
        "n": {"type": "int64", "min": 0, "max": 10, "nullable": False},
        "s": {"type": "string", "allowed": ["a", "b"], "regex": "^[a-z]$"},
        "u": {"type": "string", "unique": True},
    },
    "rules": [{"name": "r1", "expr": "n < 5"}],
    "freshness": {"column": "ts", "max_age": "36h"},
}


def diff_of(mutate: Any) -> list[tuple[str, str]]:
    new = copy.deepcopy(OLD)
    mutate(new)
    d = diff_contracts(parse_contract(OLD, Path("old.yaml")), parse_contract(new, Path("new.yaml")))
    return [(c.kind, c.path) for c in d.changes]


COMPATIBLE = [
    ("new nullable column", lambda d: d["columns"].update(extra={"type": "float64"}), "columns.extra"),
    ("widened min", lambda d: d["columns"]["n"].update(min=-5), "columns.n.min"),
    ("widened max", lambda d: d["columns"]["n"].update(max=20), "columns.n.max"),
    ("removed bound", lambda d: d["columns"]["n"].pop("max"), "columns.n.max"),
    ("added allowed value", lambda d: d["columns"]["s"]["allowed"].append("c"), "columns.s.allowed"),
    ("dropped allowed list", lambda d: d["columns"]["s"].pop("allowed"), "columns.s.allowed"),
    ("relaxed nullability", lambda d: d["columns"]["n"].update(nullable=True), "columns.n.nullable"),
    ("removed regex", lambda d: d["columns"]["s"].pop("regex"), "columns.s.regex"),
    ("removed unique", lambda d: d["columns"]["u"].update(unique=False), "columns.u.unique"),
    ("removed rule", lambda d: d.update(rules=[]), "rules.0"),
    ("freshness change", lambda d: d.update(freshness={"column": "ts", "max_age": "1h"}), "freshness"),
]

BREAKING = [
    ("type change", lambda d: d["columns"]["n"].update(type="float64", min=0.0, max=10.0), "columns.n.type"),
    ("dropped column", lambda d: d["columns"].pop("u"), "columns.u"),
    ("new non-nullable column", lambda d: d["columns"].update(extra={"type": "float64", "nullable": False}), "columns.extra"),
    ("narrowed min", lambda d: d["columns"]["n"].update(min=1), "columns.n.min"),
    ("narrowed max", lambda d: d["columns"]["n"].update(max=9), "columns.n.max"),
    ("added bound", lambda d: d["columns"]["u"].update(type="int64"), "columns.u.type"),
    ("removed allowed value", lambda d: d["columns"]["s"].update(allowed=["a"]), "columns.s.allowed"),
    ("added allowed list", lambda d: d["columns"]["u"].update(allowed=["x"]), "columns.u.allowed"),
    ("tightened nullability", lambda d: d["columns"]["s"].update(nullable=False), "columns.s.nullable"),
    ("added regex", lambda d: d["columns"]["u"].update(regex="^x"), "columns.u.regex"),
    ("changed regex", lambda d: d["columns"]["s"].update(regex="^[a-b]$"), "columns.s.regex"),
    ("added unique", lambda d: d["columns"]["s"].update(unique=True), "columns.s.unique"),
    ("added rule", lambda d: d["rules"].append({"name": "r2", "expr": "n > 1"}), "rules.1"),
    ("changed rule", lambda d: d["rules"][0].update(expr="n < 4"), "rules.r1.expr"),
    ("key change", lambda d: d.update(key=["id", "n"]), "key"),
    ("event time change", lambda d: d.update(event_time=None), "event_time"),
]


@pytest.mark.parametrize(("label", "mutate", "path"), COMPATIBLE, ids=[c[0] for c in COMPATIBLE])
def test_compatible_changes(label: str, mutate: Any, path: str) -> None:
    changes = diff_of(mutate)
    assert ("compatible", path) in changes, changes
    assert all(kind == "compatible" for kind, _ in changes), changes


@pytest.mark.parametrize(("label", "mutate", "path"), BREAKING, ids=[c[0] for c in BREAKING])
def test_breaking_changes(label: str, mutate: Any, path: str) -> None:
    changes = diff_of(mutate)
    assert ("breaking", path) in changes, changes


def test_identical_contracts_have_no_changes() -> None:
    assert diff_of(lambda d: None) == []


def test_version_bump_alone_is_compatible_and_mixed_diff_is_breaking() -> None:
    old = parse_contract(OLD, Path("old.yaml"))
    new_data = copy.deepcopy(OLD)
    new_data["version"] = "2.0.0"
    d = diff_contracts(old, parse_contract(new_data, Path("new.yaml")))
    assert not d.breaking
    assert [c.path for c in d.changes] == ["version"]
    new_data["columns"]["n"]["max"] = 5
    new_data["columns"]["n"]["min"] = -1
    d = diff_contracts(old, parse_contract(new_data, Path("new.yaml")))
    assert d.breaking
    assert [c.path for c in d.breaking_changes] == ["columns.n.max"]
    assert {c.path for c in d.changes} == {"version", "columns.n.min", "columns.n.max"}
