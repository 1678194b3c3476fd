"""Finding, reading and validating ``steward.yaml``: every error names the file, the key and the fix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from steward._yaml import read_yaml
from steward.errors import SpecError
from steward.spec._base import SPEC_FILENAME, format_validation_error
from steward.spec.root import Spec, check_references

__all__ = ["find_spec", "load_spec", "parse_spec"]


def parse_spec(data: Any, path: Path) -> Spec:
    """Validate an already-parsed YAML document as a spec.

    Raises:
        SpecError: naming the file, the key path and the fix.
    """
    if not isinstance(data, dict):
        raise SpecError(
            f"{path}: the spec must be a mapping with at least 'project:'",
            hint="start the file with 'project: NAME'",
        )
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(path, exc, Spec) from None
    # the location is not a key of the file, and a frozen model takes it through a copy
    spec = spec.model_copy(update={"base_dir": path.parent.resolve(), "spec_path": path})
    check_references(spec)
    return spec


def load_spec(path: str | os.PathLike[str] | None = None) -> Spec:
    """Load and validate ``steward.yaml``.

    Args:
        path: The spec file or its directory; default: search upwards from the cwd.

    Raises:
        SpecError: the file is missing, is not YAML, names a key twice, or is invalid.
    """
    p = find_spec(path)
    data = read_yaml(p, SpecError, "spec")
    return parse_spec(data, p)


def find_spec(path: str | os.PathLike[str] | None = None) -> Path:
    """Locate the spec file: an explicit file, a directory holding one, or the nearest upwards."""
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / SPEC_FILENAME
        if not p.exists():
            raise SpecError(f"{p}: no such spec file", code="spec.missing", hint="run 'steward init DIR --example flights' to create one")
        return p
    env = os.environ.get("STEWARD_SPEC")
    if env:
        return find_spec(env)
    here = Path.cwd()
    for d in (here, *here.parents):
        if (d / SPEC_FILENAME).exists():
            return d / SPEC_FILENAME
    raise SpecError(
        f"no {SPEC_FILENAME} in {here} or its parents",
        code="spec.missing",
        hint="pass --spec PATH, set STEWARD_SPEC, or run 'steward init DIR --example flights'",
    )
