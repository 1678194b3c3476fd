"""The prompt registry: versioned files, content-hash versions, YAML and Markdown prompts."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward.errors import NotFound, SpecError, ValidationFailed
from steward.llm.prompts import PromptRegistry, content_version


def test_yaml_and_markdown_prompts_with_content_versions(tmp_path: Path) -> None:
    (tmp_path / "grader.yaml").write_text("description: grades answers\nmodel: chat-default\ntemplate: 'Grade {answer} from 1 to 5.'\n")
    (tmp_path / "notes.md").write_text("Notes about {topic}.")
    reg = PromptRegistry(tmp_path)
    assert reg.names() == ["grader", "notes"]
    g = reg.get("grader")
    assert g.version == content_version((tmp_path / "grader.yaml").read_bytes()) and g.model == "chat-default"
    assert g.render(answer="42") == "Grade 42 from 1 to 5." and g.ref == f"grader@{g.version}"
    assert reg.get("grader", g.version) == g
    with pytest.raises(ValidationFailed):
        g.render()
    (tmp_path / "grader.yaml").write_text("template: 'Grade {answer} strictly.'\n")
    assert reg.get("grader").version != g.version
    with pytest.raises(NotFound) as exc:
        reg.get("grader", g.version)
    assert exc.value.code == "llm.prompt_version"
    with pytest.raises(NotFound):
        reg.get("../etc/passwd")
    (tmp_path / "bad.yaml").write_text("templ: 'x'\n")
    with pytest.raises(SpecError):
        reg.get("bad")
