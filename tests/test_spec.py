from __future__ import annotations

from pathlib import Path

import pytest

from steward.errors import SpecError
from steward.spec import load_spec


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "steward.yaml"
    p.write_text(text)
    return p


def test_minimal_spec_loads_with_defaults(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, "project: demo\n"))
    assert spec.project == "demo"
    assert spec.root == (tmp_path / ".steward").resolve()
    assert spec.lake_url.endswith(".steward/lake")


def test_unknown_key_names_file_key_and_suggestion(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "project: demo\nsources:\n  ev:\n    path: landing\n    fromat: csv\n    contract: c\ncontracts:\n  c: c.yaml\n",
    )
    with pytest.raises(SpecError) as exc:
        load_spec(p)
    msg = str(exc.value)
    assert str(p) in msg
    assert "sources.ev.fromat" in msg
    assert "did you mean 'format'" in msg


def test_bad_enum_value_names_key(tmp_path: Path) -> None:
    p = write(tmp_path, "project: demo\nsources:\n  ev:\n    path: x\n    format: xml\n    contract: c\ncontracts:\n  c: c.yaml\n")
    with pytest.raises(SpecError, match=r"sources\.ev\.format"):
        load_spec(p)


def test_undeclared_contract_is_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, "project: demo\nsources:\n  ev:\n    path: x\n    contract: nope\n")
    with pytest.raises(SpecError, match="contract 'nope' is not declared"):
        load_spec(p)


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    p = write(tmp_path, "project: demo\nsources: [\n")
    with pytest.raises(SpecError, match="line"):
        load_spec(p)


def test_missing_spec_has_hint(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as exc:
        load_spec(tmp_path / "nope.yaml")
    assert exc.value.code == "spec.missing"
    assert exc.value.hint and "steward init" in exc.value.hint


def test_bad_project_name(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="project"):
        load_spec(write(tmp_path, "project: 'a b'\n"))


def test_paths_resolve_against_spec_dir(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, "project: demo\nstorage:\n  root: state\n"))
    assert spec.resolve("contracts/x.yaml") == (tmp_path / "contracts/x.yaml").resolve()
    assert spec.root == (tmp_path / "state").resolve()


def test_bundled_example_spec_is_valid() -> None:
    from steward.examples import example_dir

    spec = load_spec(example_dir("flights") / "steward.yaml")
    assert set(spec.sources) >= {"flights", "weather", "planes", "airlines"}
    for name in spec.contracts:
        assert spec.contract_path(name).exists()
