"""What every spec model shares: the strict, frozen base class and the error that names the key and the fix."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from steward.errors import SpecError

__all__ = ["SPEC_FILENAME", "EnvVarName", "format_validation_error"]

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


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# prefixes of well-known credentials (OpenAI, Anthropic, GitHub, Slack, AWS, Google, Stripe, JWTs)
_SECRET_PREFIXES = ("sk-", "sk_", "ghp_", "gho_", "github_pat_", "xox", "AKIA", "ASIA", "AIza", "rk_", "pk_", "eyJ")


def _env_var_name(value: str) -> str:
    """An environment variable's NAME; something that looks like the secret itself is refused.

    The value is never repeated in the error (it may be the secret): see :func:`format_validation_error`.
    """
    if value.startswith(_SECRET_PREFIXES) or not _ENV_NAME.fullmatch(value):
        raise ValueError("this must be the NAME of an environment variable that holds the secret, never the secret itself")
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value) and sum(c.isdigit() for c in value) >= 3
    # names are words joined by underscores (STEWARD_KEY_RAG_3f9a2b...); a token is one long run of mixed characters
    if len(value) >= 20 and mixed and "_" not in value:
        raise ValueError(
            "this looks like a secret, not an environment variable name: put the secret in the environment and name the variable here"
        )
    return value


EnvVarName = Annotated[
    str,
    AfterValidator(_env_var_name),
    Field(description="the NAME of an environment variable holding the secret; never the secret itself"),
]
"""The name of an environment variable that holds a secret (``key_env``, ``api_key_env``)."""

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
        elif str(loc[-1]).endswith("_env") if loc else False:
            # never echo what was written where a secret's NAME belongs: it may be the secret itself
            lines.append(f"key '{key}': {err['msg'].removeprefix('Value error, ')} (value not shown)")
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
