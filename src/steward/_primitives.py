"""The small rules every layer shares, each written exactly once (private: import the names, not the module's insides).

* **clock**: :func:`utcnow` and :func:`iso_utc`, the one text form of an instant that Steward stores
  (ISO 8601, UTC, microseconds, so it sorts as text), and :func:`to_utc`, the one way to read one back.
* **ids and hashes**: :func:`request_id`, the id of one request (HTTP middleware and LLM gateway), and
  :func:`canonical_json`, the one text of a value that hashes are taken over (audit chain, approvals).
* **actor**: who did something, in one grammar (:func:`make_actor`, :func:`parse_actor`, :func:`resolve_actor`).
* **durations**: one grammar (:func:`parse_duration` for code, :data:`DurationText` for pydantic models).
* **progress**: the one callback shape long work reports through (:class:`Progress`).
* **problem+json**: :data:`PROBLEM_MEDIA_TYPE` and :func:`problem_body` (RFC 9457). They live in
  :mod:`steward.errors`, next to the error tree they render, because this module raises errors from
  that tree; they are re-exported here so every caller imports primitives from one place.

This module may import only the standard library, :mod:`steward.errors` and pydantic.
"""

from __future__ import annotations

import getpass
import itertools
import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal, Protocol, cast, get_args

from pydantic import BeforeValidator

from steward.errors import PROBLEM_MEDIA_TYPE, ValidationFailed, problem_body

__all__ = [
    "ACTOR_KINDS",
    "DURATION_FORMS",
    "PROBLEM_MEDIA_TYPE",
    "Actor",
    "ActorKind",
    "DurationText",
    "Progress",
    "canonical_json",
    "check_duration",
    "format_value",
    "iso_utc",
    "make_actor",
    "parse_actor",
    "parse_duration",
    "problem_body",
    "report_progress",
    "request_id",
    "resolve_actor",
    "to_utc",
    "utcnow",
]


# -- clock ------------------------------------------------------------------------------------


def iso_utc(when: datetime | float) -> str:
    """The stored text of an instant: ISO 8601 in UTC with microseconds, so that text order is time order.

    Args:
        when: An aware datetime (converted to UTC) or seconds since the epoch (an injected clock's reading).
    """
    dt = datetime.fromtimestamp(when, tz=UTC) if isinstance(when, int | float) else when.astimezone(UTC)
    return dt.isoformat(timespec="microseconds")


def utcnow() -> str:
    """Now, as :func:`iso_utc` text (``2026-01-01T12:00:00.000000+00:00``)."""
    return iso_utc(datetime.now(UTC))


def to_utc(value: datetime | str) -> datetime:
    """An aware UTC datetime from a datetime or ISO 8601 text (``Z`` or an offset); naive means UTC.

    Raises:
        ValueError: text that is not ISO 8601 (callers name the field in their own error).
    """
    dt = datetime.fromisoformat(value.strip()) if isinstance(value, str) else value
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# -- request ids ------------------------------------------------------------------------------

# A per-process random prefix and a counter, 32 hex digits like a uuid4. uuid4() reads os.urandom on every call,
# which releases the GIL and may wait a whole switch interval to get it back while a worker thread computes.
_rid_prefix = uuid.uuid4().hex[:20]
_rid_counter = itertools.count(1)


def _reseed_request_ids() -> None:
    # a forked worker (a pre-forking server) must not repeat its parent's ids
    global _rid_prefix, _rid_counter
    _rid_prefix = uuid.uuid4().hex[:20]
    _rid_counter = itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_request_ids)


def request_id() -> str:
    """A new request id: 32 hex digits, unique across processes, cheap to make."""
    return f"{_rid_prefix}{next(_rid_counter):012x}"


def canonical_json(value: Any) -> str:
    """Sorted, compact JSON (non-JSON values as ``str``): the same value always gives the same text.

    The audit trail's hash chain and approval call hashes are taken over this text, so it must never change.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


# -- actor ------------------------------------------------------------------------------------

ActorKind = Literal["user", "api", "mcp", "agent", "loop", "system"]
ACTOR_KINDS: Final[tuple[ActorKind, ...]] = get_args(ActorKind)


@dataclass(frozen=True)
class Actor:
    """Who did something. Its text (``str(actor)``) is what tables and the audit trail store.

    Grammar::

        actor := KIND ":" NAME                       user:alice  api:ops-key  mcp:stdio  loop:steward  system:rollout
               | "agent:" RUN_ID ":" actor           agent:3f2a9c1e0b7d4a66:api:ops-key

    KIND is ``user`` (a person: ``--actor``, ``$STEWARD_ACTOR`` or the OS user), ``api`` (an API key's
    name, over HTTP), ``mcp`` (an API key's name over MCP, or ``stdio``), ``agent`` (the agent during
    one run, on behalf of another actor), ``loop`` (the self-healing loop) or ``system`` (Steward
    itself: the rollout controller, the demo, evals). Text without a known ``KIND:`` prefix is a
    person's name: ``alice`` reads as ``user:alice`` (older rows and ``--actor alice`` stay valid).

    Attributes:
        kind: One of :data:`ACTOR_KINDS`.
        name: The name within the kind (an agent's run id for ``agent``).
        on_behalf_of: For ``agent`` only: who asked.
    """

    kind: ActorKind
    name: str
    on_behalf_of: Actor | None = None

    def __str__(self) -> str:
        tail = f":{self.on_behalf_of}" if self.on_behalf_of is not None else ""
        return f"{self.kind}:{self.name}{tail}"


def _actor_name(name: str, what: str) -> str:
    text = name.strip()
    if not text or any(not c.isprintable() for c in text):
        # actors come from people (--actor, $STEWARD_ACTOR, key names): a stable error, never a traceback
        raise ValidationFailed(
            f"{what} {name!r} must be non-empty printable text",
            hint="name who acts, e.g. alice or user:alice",
            details={"errors": [{"field": "actor", "message": "non-empty printable text"}]},
        )
    return text


def make_actor(kind: ActorKind, name: str, *, on_behalf_of: str | Actor | None = None) -> str:
    """The actor text of ``kind`` and ``name`` (see :class:`Actor` for the grammar).

    Args:
        kind: What acts; ``agent`` needs ``on_behalf_of``.
        name: Its name (an agent's run id, without ``:``).
        on_behalf_of: For ``agent``: the actor who asked (text is parsed, so ``alice`` means ``user:alice``).

    Raises:
        ValidationFailed: an empty name, or one with control characters.
        ValueError: an unknown kind, or ``on_behalf_of`` given to (or missing from) the wrong kind.
    """
    if kind not in ACTOR_KINDS:
        raise ValueError(f"unknown actor kind {kind!r}: use one of {', '.join(ACTOR_KINDS)}")
    clean = _actor_name(name, f"{kind} name")
    if (kind == "agent") != (on_behalf_of is not None):
        raise ValueError("an agent actor needs on_behalf_of (who asked); no other kind takes one")
    if kind == "agent" and ":" in clean:
        raise ValueError(f"an agent's run id cannot contain ':' (got {name!r})")
    behalf = parse_actor(on_behalf_of) if isinstance(on_behalf_of, str) else on_behalf_of
    return str(Actor(kind, clean, behalf))


def parse_actor(text: str) -> Actor:
    """Read actor text (canonical, or a bare name meaning ``user:NAME``).

    Raises:
        ValidationFailed: the text is empty or holds control characters.
    """
    clean = _actor_name(text, "actor")
    kind, sep, rest = clean.partition(":")
    if not sep or kind not in ACTOR_KINDS or not rest.strip():
        return Actor("user", clean)
    if kind == "agent":
        run, sep, behalf = rest.partition(":")
        if sep and run.strip() and behalf.strip():
            return Actor("agent", run.strip(), parse_actor(behalf))
        return Actor("user", clean)  # "agent:1" names no one it acts for: only a name
    return Actor(cast("ActorKind", kind), rest.strip())


def resolve_actor(explicit: str | None = None) -> str:
    """Who acts, as canonical actor text: ``explicit``, else ``$STEWARD_ACTOR``, else the OS user.

    A bare name (``alice``) becomes ``user:alice``; canonical text is returned unchanged.
    """
    for candidate in (explicit, os.environ.get("STEWARD_ACTOR")):
        if candidate and candidate.strip():
            return str(parse_actor(candidate))
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no passwd entry in some containers
        user = "unknown"
    return make_actor("user", user or "unknown")


# -- durations --------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS: Final[dict[str, float]] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
DURATION_FORMS: Final = "a duration is a number and a unit (ms, s, m, h, d or w; no unit means seconds), e.g. 90s, 30m, 1.5h, 7d or 2w"


def _seconds(value: object) -> float | None:
    """Seconds of a duration value, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2) or "s"]
    else:
        return None
    return seconds if seconds >= 0 and seconds != float("inf") else None


def parse_duration(value: str | float | timedelta) -> timedelta:
    """A duration as a timedelta: ``"90s"``, ``"30m"``, ``"1.5h"``, ``"7d"``, ``"2w"``, ``"250ms"``, or seconds.

    The grammar is ``NUMBER [UNIT]`` with optional blanks around and between; NUMBER is a whole or
    decimal number, UNIT one of ``ms s m h d w``, and no unit means seconds (so does a bare int or float).
    It is the union of the four grammars Steward used to have: the spec's and the feature definitions'
    (whole number and unit), the contracts' (decimal number and unit) and the monitor's (decimals,
    ``ms``, blanks, seconds by default).

    Raises:
        ValidationFailed: the value is not a duration (the message names it and the accepted forms).
    """
    seconds = _seconds(value)
    try:
        if seconds is not None:
            return timedelta(seconds=seconds)
    except OverflowError:
        pass
    raise ValidationFailed(f"bad duration {value!r}: {DURATION_FORMS}")


def check_duration(value: object) -> str:
    """Pydantic validator of :data:`DurationText`: the duration as text, stripped (numbers become seconds).

    Raises:
        ValueError: not a duration (pydantic reports it with the key's path).
    """
    seconds = _seconds(value)
    if seconds is None:
        raise ValueError(f"{value!r} is not a duration; {DURATION_FORMS}")
    if isinstance(value, str):
        return value.strip()
    return format(seconds, "f").rstrip("0").rstrip(".") or "0"


DurationText = Annotated[str, BeforeValidator(check_duration)]
"""A duration in a spec or contract file, kept as the text written (parse it with :func:`parse_duration`)."""


# -- progress ---------------------------------------------------------------------------------


class Progress(Protocol):
    """The callback long work reports its progress through: ``progress(stage, done, total)``.

    ``stage`` says what is being done, for a person (``"flights: contract gate"``, ``"fitting the model"``);
    ``done`` counts the units finished in that stage and ``total`` is how many there are, or None when
    unknown (a stream). A call with ``done == 0`` and ``total is None`` announces a step that has no
    count (edges print it as a line); calls that count drive a progress bar per stage.
    """

    def __call__(self, stage: str, done: int, total: int | None, /) -> None:
        """Report that ``done`` of ``total`` units of ``stage`` are finished."""


def report_progress(progress: Progress | None, stage: str, done: int = 0, total: int | None = None) -> None:
    """Call ``progress`` if there is one; with only a ``stage``, announce a step."""
    if progress is not None:
        progress(stage, done, total)


def format_value(value: Any) -> str:
    """A metric or value as a card and the CLI show it: ``n/a`` for missing, four decimals for floats."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
