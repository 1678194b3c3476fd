"""Input policy per served feature: reject, warn (Warning header + counter) or allow unseen categories and
values outside the data contract's range (Issue 15 defect 8)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_helpers import FakeRegistry, native_runtime, row, serving_spec

from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.serving.server import ModelServer
from steward.workspace import Workspace, open_workspace

pytestmark = pytest.mark.anyio

KEYS = ApiKeys({"op-key": ("op1", "operator")})
OP = {"X-API-Key": "op-key"}
CONTRACT = """\
name: flights
version: "1"
columns:
  dep_hour: {type: int64, min: 0, max: 23}
  distance: {type: float64, min: 0}
  carrier: {type: string}
"""


def _workspace(root: Path) -> Workspace:
    (root / "contracts").mkdir(parents=True)
    (root / "contracts" / "flights.yaml").write_text(CONTRACT)
    (root / "steward.yaml").write_text("project: serve\ncontracts:\n  flights: contracts/flights.yaml\n")
    return open_workspace(root)


async def _post(tmp_path: Path, policy: dict[str, Any] | None, bodies: list[dict[str, Any]]) -> tuple[list[httpx.Response], str]:
    ws = _workspace(tmp_path / "proj")
    reg = FakeRegistry()
    reg.add("flights", "1", lambda: native_runtime(0, "flights", "1"), "champion")
    model: dict[str, Any] = {} if policy is None else {"input_policy": policy}
    spec = serving_spec(models={"flights": model}, poll_interval_s=0, prediction_log={"enabled": False})
    server = ModelServer(ws, spec, loader=reg.load, resolver=reg.resolve)
    app = create_app(ws, model_server=server, api_keys=KEYS, serving_spec=spec)
    out = []
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                for _ in range(500):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.02)
                for body in bodies:
                    out.append(await client.post("/v1/models/flights/predict", json=body, headers=OP))
                metrics = (await client.get("/metrics", headers=OP)).text
    finally:
        ws.close()
    return out, metrics


async def test_default_is_warn_with_a_header_and_a_counter(tmp_path: Path) -> None:
    bodies = [
        {"row": row(0)},
        {"row": row(0, carrier="ZZ")},
        {"rows": [row(0), row(1, dep_hour=99, carrier="\U0001f600")]},
        {"row": row(0, distance=-5.0)},
    ]
    (clean, unseen, two, negative), metrics = await _post(tmp_path, None, bodies)
    assert all(r.status_code == 200 for r in (clean, unseen, two, negative)), [r.text for r in (clean, unseen, two, negative)]
    assert "warning" not in clean.headers
    assert unseen.headers["warning"] == "199 - \"row 0: carrier 'ZZ' not seen in training\""
    assert "row 1: dep_hour 99 outside the contract range [0, 23]" in two.headers["warning"]
    assert "row 1: carrier '\\U0001f600' not seen in training" in two.headers["warning"]
    assert negative.headers["warning"] == '199 - "row 0: distance -5.0 outside the contract range [0, inf]"'
    assert 'steward_input_out_of_policy_total{feature="carrier",kind="unseen_category",model="flights"} 2.0' in metrics
    assert 'steward_input_out_of_policy_total{feature="dep_hour",kind="out_of_range",model="flights"} 1.0' in metrics
    assert 'steward_input_out_of_policy_total{feature="distance",kind="out_of_range",model="flights"} 1.0' in metrics


async def test_reject_answers_422_naming_row_and_field(tmp_path: Path) -> None:
    bodies = [{"rows": [row(0), row(1, dep_hour=99)]}, {"row": row(0, carrier="ZZ")}, {"row": row(0)}]
    (hour, carrier, ok), metrics = await _post(tmp_path, {"default": "warn", "features": {"dep_hour": "reject"}}, bodies)
    assert hour.status_code == 422 and hour.headers["content-type"].startswith("application/problem+json")
    assert [(e["row"], e["field"], e["type"]) for e in hour.json()["errors"]] == [(1, "rows.1.dep_hour", "value_error.out_of_range")]
    assert carrier.status_code == 200 and "carrier 'ZZ'" in carrier.headers["warning"]  # still the default, warn
    assert ok.status_code == 200 and "warning" not in ok.headers
    assert 'steward_input_out_of_policy_total{feature="carrier",kind="unseen_category",model="flights"} 1.0' in metrics
    assert 'feature="dep_hour"' not in metrics  # a rejected request is a 422, not a served warning


async def test_allow_serves_silently(tmp_path: Path) -> None:
    (r,), metrics = await _post(tmp_path, {"default": "allow"}, [{"row": row(0, carrier="ZZ", dep_hour=99)}])
    assert r.status_code == 200 and "warning" not in r.headers
    assert "steward_input_out_of_policy_total{" not in metrics
