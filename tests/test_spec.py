from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

import steward.spec
from steward.errors import SpecError
from steward.examples import example_dir
from steward.spec import GatewaySpec, LabelsSpec, PriceSpec, Spec, load_spec


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


def test_a_key_written_twice_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    p = write(tmp_path, "project: demo\nserving:\n  max_rows: 5\nmonitoring: {}\nserving:\n  max_rows: 9\n")
    with pytest.raises(SpecError) as exc:
        load_spec(p)
    assert exc.value.code == "spec.duplicate_key"
    assert str(p) in exc.value.message and "'serving' at line 5 (first at line 2)" in exc.value.message


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
    spec = load_spec(example_dir("flights") / "steward.yaml")
    assert set(spec.sources) >= {"flights", "weather", "planes", "airlines"}
    for name in spec.contracts:
        assert spec.contract_path(name).exists()


def _flights() -> Spec:
    return load_spec(example_dir("flights") / "steward.yaml")


def test_a_loaded_spec_is_frozen_at_every_level() -> None:
    spec = _flights()
    with pytest.raises(ValidationError, match="frozen"):
        spec.project = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        spec.monitoring.schedule.enabled = False  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        spec.model.gate.margin = 0.5  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        setattr(spec.llm.agent, "max_steps", 1)  # noqa: B010 - the spelling monkeypatch.setattr uses
    assert spec.project == "flights" and spec.monitoring.schedule.enabled and spec.llm.agent.max_steps != 1


def test_every_spec_model_is_frozen() -> None:
    models = [v for v in vars(steward.spec).values() if isinstance(v, type) and issubclass(v, BaseModel)]
    assert len(models) >= 40
    assert [m.__name__ for m in models if not m.model_config.get("frozen")] == []


def test_an_override_is_a_validated_copy_and_the_original_is_untouched() -> None:
    spec = _flights()
    before = spec.model_dump()
    labels = LabelsSpec(source="silver.outcomes", join=["carrier"], match="asof", time_column="at")
    new = spec.with_overrides(
        {"monitoring.schedule.enabled": False, "llm.agent.max_steps": 2, "monitoring.labels": labels},
        model=spec.model.model_copy(update={"seed": 7}),
    )
    assert (new.monitoring.schedule.enabled, new.llm.agent.max_steps, new.model.seed) == (False, 2, 7)
    assert new.monitoring.labels == labels
    assert new.base_dir == spec.base_dir and new.spec_path == spec.spec_path and new.root == spec.root
    assert new.sources == spec.sources and new.model.name == spec.model.name
    assert spec.model_dump() == before
    assert spec.monitoring.schedule.enabled and spec.model.seed != 7
    # no override at all is an equal copy: dumping and validating again loses nothing, not even which keys were written
    same = spec.with_overrides()
    assert same == spec
    assert [p.model_fields_set for p in same.monitoring.policies] == [p.model_fields_set for p in spec.monitoring.policies]
    assert same.model.gate.model_fields_set == spec.model.gate.model_fields_set != set(spec.model.gate.model_fields)


def test_overrides_reach_map_entries_and_create_unset_sections(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, "project: demo\n"))
    assert spec.monitoring.labels is None
    new = spec.with_overrides(
        {
            ("llm", "gateway", "prices", "openai:gpt-4.1"): PriceSpec(input_per_1m=2.0),
            "llm.gateway.aliases.chat": ["local:extractive"],
            "monitoring.labels.delay": "2h",
        }
    )
    assert new.llm.gateway.prices["openai:gpt-4.1"].input_per_1m == 2.0
    assert new.llm.gateway.aliases["chat"] == ["local:extractive"]
    assert new.monitoring.labels is not None and new.monitoring.labels.delay == "2h"
    assert spec.llm.gateway.prices == {} and spec.llm.gateway == GatewaySpec()
    # a key under a section left to its default keeps the rest of that default (injection's action is block, the
    # default collections stay)
    guarded = spec.with_overrides({"llm.guardrails.injection.threshold": 0.7, "llm.rag.collections.extra": {"path": "more"}})
    assert guarded.llm.guardrails.injection.action == "block" and guarded.llm.guardrails.injection.threshold == 0.7
    assert set(guarded.llm.rag.collections) == {"stdlib", "docs", "extra"}
    assert guarded.llm.guardrails.pii_input == spec.llm.guardrails.pii_input


def test_a_bad_override_names_the_key_and_changes_nothing(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, "project: demo\n"))
    with pytest.raises(SpecError, match=r"monitoring\.schedule\.interval_s") as exc:
        spec.with_overrides({"monitoring.schedule.interval_s": 0.1})
    assert str(spec.spec_path) in str(exc.value)
    with pytest.raises(SpecError, match=r"did you mean 'enabled'"):
        spec.with_overrides({"monitoring.schedule.enabeld": False})
    with pytest.raises(SpecError, match=r"'project' is not a section"):
        spec.with_overrides({"project.name": "x"})
    with pytest.raises(SpecError, match="contract 'c' is not declared"):
        spec.with_overrides({"sources.ev": {"path": "landing", "contract": "c"}})
    assert spec.monitoring.schedule.interval_s == 300.0 and spec.sources == {}


@pytest.mark.parametrize(
    "written",
    ["sk-live-9f8e7d6c5b4a", "AbCdEf1234567890XyZ99", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "my secret key"],
)
def test_a_literal_secret_in_key_env_is_refused_and_never_echoed(tmp_path: Path, written: str) -> None:
    for body in (
        f"project: p\nserving:\n  auth:\n    keys:\n      ci: {{key_env: '{written}', role: admin}}\n",
        f"project: p\nllm:\n  gateway:\n    providers:\n      up: {{kind: openai, base_url: 'http://x', api_key_env: '{written}'}}\n",
    ):
        (tmp_path / "steward.yaml").write_text(body)
        with pytest.raises(SpecError) as exc:
            load_spec(tmp_path / "steward.yaml")
        text = exc.value.message + str(exc.value.details) + (exc.value.hint or "")
        assert "key_env" in exc.value.message and "environment variable" in exc.value.message
        assert written not in text


def test_environment_variable_names_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "steward.yaml").write_text(
        "project: p\nserving:\n  auth:\n    keys:\n      ci: {key_env: STEWARD_CI_KEY, role: admin}\n      old: {key_env: my_key_2}\n"
    )
    spec = load_spec(tmp_path / "steward.yaml")
    assert spec.serving.auth.keys["ci"].key_env == "STEWARD_CI_KEY"
