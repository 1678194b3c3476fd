"""The whole ``steward.yaml``: the :class:`Spec` root model and the paths it resolves."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from steward.errors import SpecError
from steward.spec._base import SPEC_FILENAME, _Strict, format_validation_error
from steward.spec.data import SourceSpec, StorageSpec
from steward.spec.features import FeaturesSpec
from steward.spec.llm import LlmSpec
from steward.spec.model import ModelSpec
from steward.spec.monitoring import MonitoringSpec
from steward.spec.serving import ServingSpec

__all__ = ["Spec", "check_references"]

# Mapping is invariant in its key: a plain dict[str, Any] must be accepted as it is
_Overrides = Mapping[str, Any] | Mapping[tuple[str, ...], Any] | Mapping[str | tuple[str, ...], Any]


class Spec(_Strict):
    """The whole ``steward.yaml``.

    Attributes:
        project: Project name (letters, digits, ``-`` and ``_``).
        storage: Where state lives.
        sources: Named sources that land in bronze.
        contracts: Contract name → contract file path (relative to ``steward.yaml``).
        base_dir: Directory of the spec file; every relative path resolves against it.

    A loaded spec is frozen: assigning to any of its keys raises. :meth:`with_overrides` gives a
    validated copy with some keys changed.
    """

    project: str
    storage: StorageSpec = Field(default_factory=StorageSpec)
    sources: dict[str, SourceSpec] = Field(default_factory=dict)
    contracts: dict[str, str] = Field(default_factory=dict)
    features: FeaturesSpec = Field(default_factory=FeaturesSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    llm: LlmSpec = Field(default_factory=LlmSpec)

    base_dir: Path = Field(default=Path("."), exclude=True)
    spec_path: Path = Field(default=Path(SPEC_FILENAME), exclude=True)

    @field_validator("project")
    @classmethod
    def _project_name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_" for c in value):
            raise ValueError("use only letters, digits, '-' and '_'")
        return value

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """Resolve a path from the spec against the spec file's directory."""
        p = Path(os.path.expandvars(os.fspath(path))).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def root(self) -> Path:
        """The embedded-state directory (created on demand by the stages)."""
        return self.resolve(self.storage.root)

    @property
    def lake_url(self) -> str:
        """Root URI of the Delta lake."""
        if self.storage.lake_url:
            url = self.storage.lake_url
            return url if "://" in url else str(self.resolve(url))
        return str(self.root / "lake")

    def contract_path(self, name: str) -> Path:
        """Path of a named contract, or a :class:`SpecError` naming the fix."""
        if name not in self.contracts:
            raise SpecError(
                f"{self.spec_path}: contract '{name}' is not declared",
                code="spec.unknown_contract",
                hint=f"add it under 'contracts:' (known: {', '.join(sorted(self.contracts)) or 'none'})",
            )
        return self.resolve(self.contracts[name])

    def source(self, name: str) -> SourceSpec:
        """A named source, or a :class:`SpecError` naming the known ones."""
        if name not in self.sources:
            raise SpecError(
                f"{self.spec_path}: source '{name}' is not declared",
                code="spec.unknown_source",
                hint=f"known sources: {', '.join(sorted(self.sources)) or 'none'}",
            )
        return self.sources[name]

    def with_overrides(self, overrides: _Overrides | None = None, /, **sections: Any) -> Spec:
        """A validated copy of this spec with some keys replaced; this spec is left as it was.

        Args:
            overrides: Dotted key path → new value, e.g. ``{"monitoring.schedule.enabled": False}`` or
                ``{"serving.models.flights_delay": {"alias": "challenger"}}``; a tuple of keys for a map key
                that holds a dot (``("llm", "gateway", "prices", "openai:gpt-4.1")``). A value is plain data
                (as in ``steward.yaml``) or a spec model; a list is replaced whole.
            **sections: Top-level keys, e.g. ``model=spec.model.model_copy(update={"seed": 7})``.

        Returns:
            The new spec, with the same ``base_dir`` and ``spec_path``.

        Raises:
            SpecError: a key path crosses a value that is not a section, or the result is invalid
                (naming the key and the fix, as for the file).
        """
        # only the keys the file (or an earlier override) set: re-validating must not turn a default into a choice
        # (an unset monitoring policy threshold means something else than the same value written out)
        data = self.model_dump(round_trip=True, exclude_unset=True)
        changes: list[tuple[str | tuple[str, ...], Any]] = [*(overrides or {}).items(), *sections.items()]
        for key, value in changes:
            parts = list(key) if isinstance(key, tuple) else key.split(".")
            node = data
            live: Any = self
            for depth, part in enumerate(parts[:-1]):
                live = getattr(live, part, None) if isinstance(live, BaseModel) else live.get(part) if isinstance(live, dict) else None
                child = node.get(part)
                if child is None:
                    # a section left to its default starts from that default (the injection guard's default
                    # action is block, not GuardSpec's flag); an unset optional one (monitoring.labels) from {}
                    child = node[part] = {} if live is None else _dump_set(live)
                if not isinstance(child, dict):
                    where = ".".join(parts[: depth + 1])
                    raise SpecError(
                        f"override '{'.'.join(parts)}': '{where}' is not a section", code="spec.invalid", hint="override it whole"
                    )
                node = child
            node[parts[-1]] = value
        try:
            new = type(self).model_validate(data)
        except ValidationError as exc:
            raise format_validation_error(self.spec_path, exc, type(self)) from None
        new = new.model_copy(update={"base_dir": self.base_dir, "spec_path": self.spec_path})
        check_references(new)
        return new


def check_references(spec: Spec) -> None:
    """Check what one section cannot check alone: each source's contract is declared and its kind has what it needs.

    Raises:
        SpecError: naming the file, the key and the fix.
    """
    path = spec.spec_path
    for name, src in spec.sources.items():
        if src.contract not in spec.contracts:
            raise SpecError(
                f"{path}: key 'sources.{name}.contract': contract '{src.contract}' is not declared",
                hint=f"declare it under 'contracts:' (known: {', '.join(sorted(spec.contracts)) or 'none'})",
            )
        if src.kind == "files" and not src.path:
            raise SpecError(f"{path}: key 'sources.{name}.path': a files source needs a landing path", hint="add 'path: landing/NAME'")
        if src.kind == "redis_stream" and not src.stream:
            raise SpecError(f"{path}: key 'sources.{name}.stream': a redis_stream source needs a stream key", hint="add 'stream: NAME'")


def _dump_set(value: Any) -> Any:
    """``value`` as data holding only the keys that were set, so that validating it again keeps every default a default."""
    if isinstance(value, BaseModel):
        return value.model_dump(round_trip=True, exclude_unset=True)
    if isinstance(value, dict):
        return {k: _dump_set(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dump_set(v) for v in value]
    return value
