"""Reading the YAML a user writes (``steward.yaml``, contracts, eval sets): strict about duplicate keys.

PyYAML's ``safe_load`` keeps the last of two equal keys in a mapping and says nothing, so a second
``serving:`` block silently replaces the first. :func:`read_yaml` refuses that, naming both lines, and
turns every YAML syntax error into the caller's own error class with the file, the line and a hint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

from steward.errors import StewardError

__all__ = ["DuplicateKey", "loads_strict", "read_yaml"]


class DuplicateKey(ConstructorError):
    """A mapping names the same key twice (PyYAML would keep the last one silently)."""

    def __init__(self, key: Any, first: Node, second: Node) -> None:
        super().__init__(None, None, f"duplicate key {key!r} (first at line {first.start_mark.line + 1})", second.start_mark)
        self.key = key
        self.first_line = first.start_mark.line + 1
        self.second_line = second.start_mark.line + 1


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing duplicate keys in any mapping."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may repeat by design
                continue
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML reports it itself below
                continue
            if first is not None:
                raise DuplicateKey(key, first, key_node)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def loads_strict(text: str) -> Any:
    """Parse YAML text safely, refusing duplicate keys.

    Raises:
        DuplicateKey: a mapping names a key twice.
        yaml.YAMLError: the text is not YAML.
    """
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: Path, error: type[StewardError], code_prefix: str) -> Any:
    """Read a user's YAML file, turning every problem into ``error`` naming the file and the line.

    Args:
        path: The file.
        error: The caller's error class (:class:`~steward.errors.SpecError`, :class:`~steward.errors.ContractError`...).
        code_prefix: The error code's prefix (``spec`` gives ``spec.yaml`` and ``spec.duplicate_key``).

    Raises:
        StewardError: of class ``error``, for a duplicate key or a syntax error.
    """
    try:
        return loads_strict(path.read_text(encoding="utf-8"))
    except DuplicateKey as exc:
        raise error(
            f"{path}: duplicate key {exc.key!r} at line {exc.second_line} (first at line {exc.first_line})",
            code=f"{code_prefix}.duplicate_key",
            hint="keep one of them: YAML would silently use only the last",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{path}: not valid YAML{where}", code=f"{code_prefix}.yaml", hint="check indentation and quoting there") from None
