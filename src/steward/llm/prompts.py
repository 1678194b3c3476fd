"""The prompt registry: prompts are versioned files, their version is a content hash.

A prompt is ``prompts/NAME.md`` (the whole file is the template) or
``prompts/NAME.yaml`` (``template:`` plus optional ``description:`` and
``model:``). Templates use ``{name}`` placeholders (:meth:`str.format_map`).
The version is the first 12 hex digits of the SHA-256 of the file's bytes, so
editing a prompt changes its version and every trace records which one ran.

Usage::

    reg = PromptRegistry(ws.spec.resolve("prompts"))
    p = reg.get("support")
    text = p.render(product="Steward")
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from steward.errors import NotFound, SpecError, ValidationFailed

__all__ = ["Prompt", "PromptRegistry", "content_version"]

logger = logging.getLogger(__name__)

_SUFFIXES = (".yaml", ".yml", ".md")


def content_version(data: bytes | str) -> str:
    """The version of a piece of prompt content: 12 hex digits of its SHA-256."""
    raw = data.encode() if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:12]


@dataclass(frozen=True)
class Prompt:
    """One prompt at one version.

    Attributes:
        name: File stem, e.g. ``support``.
        version: Content hash of the file.
        template: The template text.
        description: Free text from the YAML file.
        model: Suggested model alias, if the file names one.
        path: Source file.
    """

    name: str
    version: str
    template: str
    description: str = ""
    model: str | None = None
    path: Path | None = None

    @property
    def ref(self) -> str:
        """``name@version``, as recorded on traces."""
        return f"{self.name}@{self.version}"

    def render(self, variables: dict[str, Any] | None = None, /, **kwargs: Any) -> str:
        """Fill the template's ``{placeholders}``.

        Raises:
            ValidationFailed: a placeholder has no value.
        """
        values = {**(variables or {}), **kwargs}
        try:
            return self.template.format_map(values)
        except KeyError as exc:
            raise ValidationFailed(
                f"prompt {self.ref}: no value for placeholder {exc.args[0]!r}",
                code="llm.prompt_variable",
                hint="pass every placeholder the template uses",
            ) from None


class PromptRegistry:
    """Prompts read from a directory, re-read when a file changes.

    Args:
        directory: The prompts directory (need not exist: then it is empty).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._cache: dict[Path, tuple[float, Prompt]] = {}

    def _path(self, name: str) -> Path | None:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            return None
        for suffix in _SUFFIXES:
            p = self.directory / f"{name}{suffix}"
            if p.is_file():
                return p
        return None

    def names(self) -> list[str]:
        """Every prompt name in the directory."""
        if not self.directory.is_dir():
            return []
        return sorted({p.stem for p in self.directory.iterdir() if p.suffix in _SUFFIXES and p.is_file()})

    def get(self, name: str, version: str | None = None) -> Prompt:
        """The current prompt ``name``; with ``version``, check that it is still that version.

        Raises:
            NotFound: no such prompt, or it has changed since ``version``.
        """
        path = self._path(name)
        if path is None:
            raise NotFound(
                f"no prompt named {name!r} in {self.directory}",
                code="llm.prompt_not_found",
                hint=f"known prompts: {', '.join(self.names()) or 'none'}",
            )
        mtime = path.stat().st_mtime
        cached = self._cache.get(path)
        prompt = cached[1] if cached and cached[0] == mtime else self._load(name, path)
        self._cache[path] = (mtime, prompt)
        if version is not None and version != prompt.version:
            raise NotFound(
                f"prompt {name!r} is at version {prompt.version}, not {version}",
                code="llm.prompt_version",
                hint="prompt files are versioned by content hash; ask for the current version or restore the file",
            )
        return prompt

    @staticmethod
    def _load(name: str, path: Path) -> Prompt:
        raw = path.read_bytes()
        version = content_version(raw)
        if path.suffix == ".md":
            return Prompt(name=name, version=version, template=raw.decode("utf-8"), path=path)
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise SpecError(f"{path}: not valid YAML", code="llm.prompt_invalid", hint="fix the prompt file") from None
        if not isinstance(data, dict) or not isinstance(data.get("template"), str):
            raise SpecError(f"{path}: a YAML prompt needs a 'template:' string", code="llm.prompt_invalid", hint="add 'template: ...'")
        unknown = set(data) - {"template", "description", "model"}
        if unknown:
            raise SpecError(
                f"{path}: unknown key(s) {', '.join(sorted(unknown))}",
                code="llm.prompt_invalid",
                hint="valid keys: template, description, model",
            )
        return Prompt(
            name=name,
            version=version,
            template=data["template"],
            description=str(data.get("description") or ""),
            model=data.get("model"),
            path=path,
        )
