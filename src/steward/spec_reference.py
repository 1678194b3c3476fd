"""Generate the ``steward.yaml`` reference (Markdown) from the pydantic models of the :mod:`steward.spec` package.

The README's configuration reference is this function's output, and a test
checks the committed copy equals it, so the docs cannot drift from the code.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from steward._primitives import DURATION_FORMS, check_duration
from steward.spec import Spec

__all__ = ["spec_reference"]

_HIDDEN = {"base_dir", "spec_path"}


def _attr_docs(model: type[BaseModel]) -> dict[str, str]:
    """Parse a Google-style ``Attributes:`` section of a class docstring."""
    doc = inspect.getdoc(model) or ""
    out: dict[str, str] = {}
    m = re.search(r"^Attributes:\n((?:[ \t]+.*\n?)+)", doc, re.M)
    if not m:
        return out
    current = None
    for line in m.group(1).splitlines():
        item = re.match(r"^\s{2,8}(\w+):\s*(.*)$", line)
        if item and not line.startswith(" " * 9):
            current = item.group(1)
            out[current] = item.group(2).strip()
        elif current and line.strip():
            out[current] += " " + line.strip()
    return out


def _is_duration(metadata: Any) -> bool:
    return any(getattr(m, "func", None) is check_duration for m in metadata)


def _type_name(ann: Any) -> str:
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Annotated:
        return "duration" if _is_duration(ann.__metadata__) else _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin in (list, set, tuple):
        return f"list[{', '.join(_type_name(a) for a in args)}]"
    if origin is dict:
        return f"map[{_type_name(args[0])} → {_type_name(args[1])}]" if args else "map"
    if ann is type(None):
        return "null"
    if isinstance(ann, type):
        return ann.__name__ if not issubclass(ann, BaseModel) else f"[{ann.__name__}](#{ann.__name__.lower()})"
    return str(ann).replace("typing.", "")


def _default(field: FieldInfo) -> str:
    if field.default is not PydanticUndefined:
        return "" if field.default is None else f"`{field.default!r}`"
    if field.default_factory is not None:
        try:
            value = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
        if isinstance(value, BaseModel):
            return "(section defaults)"
        return f"`{value!r}`" if value not in ({}, []) else "empty"
    return "**required**"


def _models(ann: Any) -> list[type[BaseModel]]:
    out: list[type[BaseModel]] = []
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        out.append(ann)
    for a in typing.get_args(ann):
        out += _models(a)
    return out


def spec_reference() -> str:
    """The Markdown reference of every key of ``steward.yaml``, in model order."""
    seen: list[type[BaseModel]] = []
    queue: list[type[BaseModel]] = [Spec]
    while queue:
        m = queue.pop(0)
        if m in seen:
            continue
        seen.append(m)
        for name, f in m.model_fields.items():
            if name not in _HIDDEN:
                queue += [x for x in _models(f.annotation) if x not in seen]
    parts = ["# `steward.yaml` reference", "", "Generated from the models in `src/steward/spec/`; unknown keys are errors.", ""]
    parts += [f"Every *duration* (here and in data contracts) follows one grammar: {DURATION_FORMS}.", ""]
    for m in seen:
        title = "steward.yaml (top level)" if m is Spec else m.__name__
        parts += [f"## {m.__name__}" if m is not Spec else f"## {title}", ""]
        summary = (inspect.getdoc(m) or "").split("\n\n")[0].replace("\n", " ")
        if summary:
            parts += [summary, ""]
        docs = _attr_docs(m)
        parts += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for name, f in m.model_fields.items():
            if name in _HIDDEN:
                continue
            key = f.alias or name
            desc = (f.description or docs.get(name, "")).replace("|", "\\|")
            kind = "duration" if _is_duration(f.metadata) else _type_name(f.annotation)
            parts.append(f"| `{key}` | {kind} | {_default(f)} | {desc} |")
        parts.append("")
    return "\n".join(parts)
