"""What every spec model shares: the strict, frozen base class and the error that names the key and the fix."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from steward.errors import SpecError

__all__ = ["SPEC_FILENAME", "format_validation_error"]

SPEC_FILENAME = "steward.yaml"

# fields of the root model that are set from the file's location, never written in it
HIDDEN_FIELDS = ("base_dir", "spec_path")


class _Strict(BaseModel):
    """Base for every spec model: unknown keys are errors, and a loaded spec is immutable.

    Frozen because one spec object is shared by every stage, server and background task of a
    process: a change made in place by one of them would silently change the others. A variant goes
    through a copy (:meth:`steward.spec.Spec.with_overrides` or ``model_copy(update=...)``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


_LAYERS = ("bronze", "silver", "gold", "quarantine", "logs")


def _check_source(value: str) -> str:
    layer, dot, name = value.partition(".")
    if not dot or layer not in _LAYERS or not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ValueError(f"a source is LAYER.NAME with LAYER one of {', '.join(_LAYERS)}, e.g. silver.flights")
    return value


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Walk the model tree along ``loc`` (minus the last part) to list valid keys."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if fields is None:
            return []
        if part in fields:
            ann = fields[part].annotation
            current = _unwrap(ann)
        else:
            # a dict key (e.g. a source name): its value type is already current
            continue
    fields = getattr(current, "model_fields", None)
    return [k for k in fields if k not in HIDDEN_FIELDS] if fields else []


def _unwrap(ann: Any) -> Any:
    args = getattr(ann, "__args__", None)
    if args:
        for a in reversed(args):
            if isinstance(a, type) and issubclass(a, BaseModel):
                return a
    return ann


def format_validation_error(path: Path, exc: ValidationError, root: type[BaseModel]) -> SpecError:
    """One :class:`SpecError` for a pydantic error: the file, each key path and its fix (or the nearest valid key)."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = _loc(loc)
        if err["type"] == "extra_forbidden":
            known = _known_keys(root, loc)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            fix = f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(known)}"
            lines.append(f"unknown key '{key}': {fix}")
        elif err["type"] == "missing":
            lines.append(f"missing key '{key}': add it")
        else:
            fix = err["msg"]
            lines.append(f"key '{key}': {fix} (got {err.get('input')!r})")
    first = lines[0]
    more = f" (+{len(lines) - 1} more: {'; '.join(lines[1:])})" if len(lines) > 1 else ""
    return SpecError(
        f"{path}: {first}{more}",
        code="spec.invalid",
        hint="fix the key named above in the spec file",
        details={"errors": lines, "file": str(path)},
    )
