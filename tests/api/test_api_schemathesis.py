"""Schemathesis against the app's own OpenAPI document, in-process (ASGI): no 5xx, and every answer as documented.

Every operation gets a bounded number of generated requests, once with an admin key and once with none, and each
answer is checked: ``not_a_server_error``, ``status_code_conformance`` (the status is documented for the operation),
``content_type_conformance`` and ``response_schema_conformance``. Left out: the gateway's LLM routes (their request
bodies are read by hand and not yet declared in the document; they answer OpenAI/Anthropic error shapes) and nothing
else (no route of the app streams outside the gateway).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import CHECKS
from serving_helpers import FakeRegistry, FakeRuntime, make_workspace, serving_spec

from steward.api._openapi import GATEWAY_PATHS
from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.serving.server import ModelServer

KEYS = ApiKeys({"admin-key": ("admin1", "admin")})
ADMIN = {"Authorization": "Bearer admin-key"}
# small enough that the whole run stays well under a minute on a busy 2-core machine; raise it locally to dig deeper
EXAMPLES = int(os.environ.get("STEWARD_SCHEMATHESIS_EXAMPLES", "10"))


def _checks() -> list[Any]:
    names = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance")
    return [CHECKS.get_one(n) for n in names]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root: Path = tmp_path_factory.mktemp("schemathesis")
    reg = FakeRegistry()
    reg.add("m", "1", lambda: FakeRuntime("m", "1", offset=0.3), "champion")
    ws = make_workspace(root / "proj")
    spec = serving_spec(models={"m": {}}, poll_interval_s=0, batching={"max_wait_ms": 1.0}, prediction_log={"enabled": False})
    server = ModelServer(ws, spec, loader=reg.load, resolver=reg.resolve)
    app = create_app(ws, model_server=server, api_keys=KEYS, serving_spec=spec)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return schema.exclude(path_regex=GATEWAY_PATHS.pattern)


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(
    operation: Any, headers: dict[str, str], checks: list[Any], statuses: Counter[int], failures: list[str], answered: set[str]
) -> None:
    """Send EXAMPLES generated requests to one operation; count the statuses and collect every failed check."""

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        # the declared key schemes make schemathesis invent keys: drop them, so each run is exactly "admin" or "none"
        # (invented keys are wrong keys, and enough of them lock the client out: 429 on everything after)
        for name in [h for h in (case.headers or {}) if h.lower() in ("authorization", "x-api-key")]:
            del case.headers[name]
        try:
            response = case.call_and_validate(headers=headers, checks=checks)
        except (Exception, BaseExceptionGroup) as exc:  # a failed check (or a group of them), or no answer at all
            text = str(exc).strip()
            failures.append(f"{operation.label}: {type(exc).__name__}: {text[:600]}")
            return
        statuses[response.status_code] += 1
        if response.status_code < 300:
            answered.add(operation.path)

    run()


@pytest.mark.parametrize("headers", [ADMIN, {}], ids=["admin-key", "no-key"])
def test_every_operation_answers_as_documented(api_schema: Any, headers: dict[str, str]) -> None:
    operations = _operations(api_schema)
    assert len(operations) >= 30  # every native and OIP route of the app, the gateway excluded
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    answered: set[str] = set()
    checks = _checks()

    for operation in operations:
        _fuzz(operation, headers, checks, statuses, failures, answered)

    print(
        f"schemathesis ({'admin key' if headers else 'no key'}): {len(operations)} operations, {sum(statuses.values())} examples passed, "
        f"{len(failures)} failed; statuses {dict(sorted(statuses.items()))}"
    )
    assert not failures, "\n".join(sorted(set(failures)))
    assert not any(s >= 500 for s in statuses)
    if headers:
        assert "/v1/serving/models" in answered and "/v1/admin/reload" in answered  # the admin key gets through
    else:
        # with no key only the probes, /metrics (public by default) and the OIP server and readiness routes answer
        assert answered <= {"/healthz", "/readyz", "/metrics", "/v2", "/v2/health/live", "/v2/health/ready"} | {
            p for p in answered if p.startswith("/v2/models/") and p.endswith("/ready")
        }
        assert statuses[401] > 0
