"""The shared primitives: one clock text, one actor grammar, one duration grammar, one progress shape, one problem body."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from steward._primitives import (
    PROBLEM_MEDIA_TYPE,
    Actor,
    DurationText,
    Progress,
    canonical_json,
    iso_utc,
    make_actor,
    parse_actor,
    parse_duration,
    problem_body,
    report_progress,
    request_id,
    resolve_actor,
    to_utc,
    utcnow,
)
from steward.errors import NotFound, ValidationFailed

# -- clock ------------------------------------------------------------------------------------


def test_stored_instants_sort_as_text_in_time_order() -> None:
    instants = [
        datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC),
        datetime(2026, 1, 1, 12, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC),
    ]
    texts = [iso_utc(t) for t in instants]
    assert texts == sorted(texts) and texts[0] == "2026-01-01T12:00:00.000000+00:00"  # whole seconds keep their microseconds
    # another zone and epoch seconds give the same text for the same instant
    assert iso_utc(datetime(2026, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))) == texts[0]
    assert iso_utc(instants[0].timestamp()) == texts[0]
    now = utcnow()
    assert datetime.fromisoformat(now).tzinfo is not None and now.endswith("+00:00") and len(now) == len(texts[0])


def test_one_way_to_read_an_instant_back() -> None:
    noon = datetime(2013, 1, 1, 12, tzinfo=UTC)
    for text in ("2013-01-01T12:00:00Z", "2013-01-01T12:00:00", "2013-01-01 13:00:00+01:00", " 2013-01-01T12:00:00.000000+00:00 "):
        assert to_utc(text) == noon and to_utc(text).tzinfo is UTC  # Z, naive (= UTC) and offsets
    assert to_utc(datetime(2013, 1, 1, 12)) == noon and to_utc(iso_utc(noon)) == noon
    with pytest.raises(ValueError):
        to_utc("yesterday")


def test_request_ids_are_unique_and_new_in_a_forked_child() -> None:
    ids = {request_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child writes its next id and leaves at once
        os.write(write, request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    assert child[:20] != request_id()[:20]  # a forked worker must not repeat its parent's ids


def test_canonical_json_is_one_text_per_value() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == canonical_json({"a": [1, "é"], "b": 1}) == '{"a":[1,"é"],"b":1}'
    assert canonical_json({"at": datetime(2013, 1, 1, tzinfo=UTC)}) == '{"at":"2013-01-01 00:00:00+00:00"}'  # str() for the rest


# -- actor ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "actor"),
    [
        ("user:alice", Actor("user", "alice")),
        ("alice", Actor("user", "alice")),  # a bare name is a person
        ("jane.doe@example.com", Actor("user", "jane.doe@example.com")),
        ("api:ops-key", Actor("api", "ops-key")),
        ("mcp:stdio", Actor("mcp", "stdio")),
        ("loop:steward", Actor("loop", "steward")),
        ("system:rollout", Actor("system", "rollout")),
        ("agent:3f2a:api:ops-key", Actor("agent", "3f2a", Actor("api", "ops-key"))),
        ("agent:3f2a:alice", Actor("agent", "3f2a", Actor("user", "alice"))),  # the older agent form
        ("agent:1", Actor("user", "agent:1")),  # an agent acting for no one is only a name
        ("ops:alice", Actor("user", "ops:alice")),  # not a kind
    ],
)
def test_actor_text_parses_to_one_grammar(text: str, actor: Actor) -> None:
    assert parse_actor(text) == actor
    assert parse_actor(str(actor)) == actor  # the canonical text reads back the same


def test_actors_are_built_and_resolved_in_canonical_form(monkeypatch: pytest.MonkeyPatch) -> None:
    assert make_actor("api", "ops-key") == "api:ops-key"
    assert make_actor("agent", "r1", on_behalf_of="alice") == "agent:r1:user:alice"
    assert make_actor("agent", "r1", on_behalf_of=make_actor("mcp", "k")) == "agent:r1:mcp:k"
    for bad in (lambda: make_actor("robot", "x"), lambda: make_actor("agent", "r1")):  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            bad()
    for name in ("ali\nce", "a\tb"):  # names come from people: a stable error, not a traceback
        with pytest.raises(ValidationFailed, match="printable"):
            resolve_actor(name)
    with pytest.raises(ValidationFailed, match="printable"):
        make_actor("user", " ")
    with pytest.raises(ValueError, match="':'"):
        make_actor("agent", "a:b", on_behalf_of="alice")
    monkeypatch.setenv("STEWARD_ACTOR", "ops-alice")
    assert resolve_actor() == "user:ops-alice"
    assert resolve_actor("bob") == "user:bob" and resolve_actor("api:k") == "api:k"
    monkeypatch.delenv("STEWARD_ACTOR")
    assert parse_actor(resolve_actor()).kind == "user"  # the OS user


# -- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7d", 7 * 86400),  # the spec's and the feature definitions' form
        ("14h", 14 * 3600),
        (" 36h ", 36 * 3600),
        ("0s", 0),
        ("1.5h", 5400),  # contracts: decimals
        ("2w", 14 * 86400),
        ("30 m", 1800),  # the monitor: blanks, ms, no unit
        ("250ms", 0.25),
        ("90", 90),
        (3600, 3600),
        (0.5, 0.5),
        (timedelta(minutes=2), 120),
    ],
)
def test_one_duration_grammar_accepts_what_the_four_old_ones_did(value: str | float | timedelta, seconds: float) -> None:
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize("value", ["7days", "soon", "", "-1s", "1e3s", "inf", "5M", True, float("nan"), "1" * 400 + "w"])
def test_a_bad_duration_names_the_value_and_the_forms(value: object) -> None:
    with pytest.raises(ValidationFailed) as exc:
        parse_duration(value)  # type: ignore[arg-type]
    assert repr(value)[:40] in exc.value.message and "ms, s, m, h, d or w" in exc.value.message


def test_duration_text_validates_in_models_and_keeps_the_text() -> None:
    class M(BaseModel):
        window: DurationText
        ttl: DurationText | None = None

    assert M(window=" 7d ").window == "7d" and M(window=90).window == "90" and M(window=0.25).window == "0.25"
    assert parse_duration(M(window=90).window) == timedelta(seconds=90)
    with pytest.raises(ValidationError, match="a duration is a number and a unit"):
        M(window="7days")
    with pytest.raises(ValidationError, match="ttl"):
        M(window="1d", ttl="soon")


# -- progress ---------------------------------------------------------------------------------


def test_one_progress_shape_for_steps_and_counts() -> None:
    seen: list[tuple[str, int, int | None]] = []

    def record(stage: str, done: int, total: int | None, /) -> None:
        seen.append((stage, done, total))

    progress: Progress = record
    report_progress(progress, "fitting")
    report_progress(progress, "flights: contract gate", 3, 10)
    report_progress(progress, "stream", 42, None)
    report_progress(None, "nobody listens")  # no callback: nothing happens
    assert seen == [("fitting", 0, None), ("flights: contract gate", 3, 10), ("stream", 42, None)]


# -- problem+json -----------------------------------------------------------------------------


def test_one_problem_body_for_errors_and_hand_built_problems() -> None:
    body = problem_body(503, "serving.not_ready", "not loaded", instance="/readyz", extra={"models": {}})
    assert body == {
        "type": "https://steward.dev/errors/serving.not_ready",
        "title": "serving.not_ready",
        "status": 503,
        "detail": "not loaded",
        "code": "serving.not_ready",
        "instance": "/readyz",
        "models": {},
    }
    err = NotFound("no model m", hint="list them", details={"model": "m"})
    assert err.to_problem("/v1/models/m") == problem_body(
        404, "not_found", "no model m", hint="list them", instance="/v1/models/m", extra={"model": "m"}
    )
    assert PROBLEM_MEDIA_TYPE == "application/problem+json"


def test_the_primitives_import_nothing_of_steward_but_errors() -> None:
    code = "import sys, steward._primitives; print(sorted(m for m in sys.modules if m.startswith('steward')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
    assert out.stdout.strip() == "['steward', 'steward._primitives', 'steward.errors']"
