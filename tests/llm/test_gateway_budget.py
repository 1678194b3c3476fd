"""Budgets and rate limits: atomic counters on SQLite and the real Redis, and their enforcement by the gateway."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx

    from steward.llm.gateway import Gateway

LIMIT, AMOUNT = 500, 7


def _store(kind: str, target: str, prefix: str) -> Any:
    if kind == "sqlite":
        from steward.backends.kv_sqlite import SqliteKV

        return SqliteKV(target)
    from steward.backends.kv_redis import RedisKV

    return RedisKV(target, prefix=prefix)


def _hammer(kind: str, target: str, prefix: str, n: int, threads: int) -> int:
    """Reserve ``AMOUNT`` against ``LIMIT`` n times from each of ``threads`` threads; return the successes."""
    store = _store(kind, target, prefix)
    ok = [0] * threads

    def work(i: int) -> None:
        for _ in range(n):
            if store.reserve([("rl:k:req:1", 1, None, 60.0), ("bud:key:k:tok:2026-11", AMOUNT, LIMIT, 60.0)]) == -1:
                ok[i] += 1

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    store.close()
    return sum(ok)


@pytest.fixture(params=["sqlite", "redis"])
def kv(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> tuple[str, str, str]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return "redis", url, f"steward-test:{unique}:"
    return "sqlite", str(tmp_path / "kv.db"), ""


_CHILD = """
import sys
sys.path.insert(0, {here!r})
from test_gateway_budget import _hammer
print(_hammer({kind!r}, {target!r}, {prefix!r}, 15, 4))
"""


def test_concurrent_processes_and_threads_never_overspend(kv: tuple[str, str, str]) -> None:
    kind, target, prefix = kv
    _store(kind, target, prefix).close()  # create the schema before the race
    code = _CHILD.format(here=str(Path(__file__).parent), kind=kind, target=target, prefix=prefix)
    children = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    in_process = _hammer(kind, target, prefix, 15, 4)
    successes = in_process + sum(int(c.communicate(timeout=60)[0]) for c in children)
    assert all(c.returncode == 0 for c in children)
    # 240 attempts of 7 against 500 from 4 processes x 4 threads: exactly 71 fit, never more
    assert successes == LIMIT // AMOUNT
    store = _store(kind, target, prefix)
    assert store.get("bud:key:k:tok:2026-11") == (LIMIT // AMOUNT) * AMOUNT
    assert store.get("rl:k:req:1") == successes  # uncapped counters move only with successful reservations
    store.close()


def test_reserve_is_all_or_nothing_and_adjust_settles(kv: tuple[str, str, str]) -> None:
    store = _store(*kv)
    assert store.reserve([("a", 5, 10, 60.0), ("b", 5, 4, 60.0)]) == 1
    assert store.get("a") == 0 and store.get("b") == 0  # nothing was incremented
    assert store.reserve([("a", 5, 10, 60.0), ("b", 4, 4, 60.0)]) == -1
    store.adjust([("a", -3, 60.0)])
    assert store.get("a") == 2
    assert store.reserve([("a", 9, 10, 60.0)]) == 1 - 1  # index 0 fails: 2 + 9 > 10
    assert store.reserve([("short", 1, 1, 0.2)]) == -1
    store.close()


def _http(gw: Gateway) -> httpx.AsyncClient:
    import httpx

    from steward.api.app import create_app

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gw.ws, llm_gateway=gw)), base_url="http://gw")


def _body(max_tokens: int, text: str = "Budgets are enforced. How are budgets enforced?") -> dict[str, Any]:
    return {"model": "local:x", "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}


def test_key_token_budget_refuses_with_429_insufficient_quota_before_the_provider(gateway_project: Any) -> None:
    ws = gateway_project(
        {
            "keys": {
                "team-a": {"key_env": "STEWARD_KEY_TEAM_A", "budget": {"tokens": 400, "period": "day"}},
                "team-b": {"key_env": "STEWARD_KEY_TEAM_B"},
            },
            "cache": {"exact": False},
        }
    )

    async def go() -> None:
        from steward.llm.gateway import Gateway

        gw = Gateway(ws)
        local = gw.provider("local")
        http = _http(gw)
        auth = {"authorization": f"Bearer {gateway_project.token_a}"}
        r = await http.post("/v1/chat/completions", json=_body(100), headers=auth)
        assert r.status_code == 200
        used = r.json()["usage"]["total_tokens"]
        counter = next(k for k in _counter_keys(gw) if ":tok:" in k)
        assert gw.counters.get(counter) == used  # settled to the actual usage, not the estimate
        calls = local.calls  # type: ignore[attr-defined]
        r = await http.post("/v1/chat/completions", json=_body(1000), headers=auth)
        assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
        problem = r.json()["error"]
        assert problem["steward_code"] == "limit.budget" and problem["limit"] == 400 and "400 tokens per day" in problem["message"]
        assert local.calls == calls  # type: ignore[attr-defined]  # refused before reaching the provider
        # team-b has no budget
        r = await http.post("/v1/chat/completions", json=_body(1000), headers={"authorization": f"Bearer {gateway_project.token_b}"})
        assert r.status_code == 200
        await gw.aclose()

    asyncio.run(go())


def _counter_keys(gw: Gateway) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(str(gw.ws.root / "kv.db"))
    try:
        return [r[0] for r in conn.execute("SELECT key FROM counters")]
    finally:
        conn.close()


def test_team_usd_budget_and_rate_limit(gateway_project: Any) -> None:
    ws = gateway_project(
        {
            "keys": {
                "team-a": {"key_env": "STEWARD_KEY_TEAM_A", "team": "a", "rate_limit": {"requests_per_minute": 3}},
                "team-b": {"key_env": "STEWARD_KEY_TEAM_B", "team": "a"},
            },
            "teams": {"a": {"budget": {"usd": 0.3, "period": "month"}}},
            "prices": {"local:x": {"input_per_1m": 1000, "output_per_1m": 1000}},  # $0.001 per token
            "cache": {"exact": False},
        }
    )

    async def go() -> None:
        from steward.llm.gateway import Gateway

        gw = Gateway(ws)
        http = _http(gw)
        a = {"authorization": f"Bearer {gateway_project.token_a}"}
        b = {"authorization": f"Bearer {gateway_project.token_b}"}
        r = await http.post("/v1/chat/completions", json=_body(20), headers=a)
        assert r.status_code == 200
        cost = float(r.headers["x-steward-cost-usd"])
        assert cost == pytest.approx(r.json()["usage"]["total_tokens"] * 0.001)
        # the team's money is shared: key b is refused once a's spend leaves too little
        r = await http.post("/v1/chat/completions", json=_body(300 - round(cost * 1000)), headers=b)
        assert (
            r.status_code == 429
            and r.json()["error"]["code"] == "insufficient_quota"
            and r.json()["error"]["scope"] == "team"
            and r.json()["error"]["unit"] == "usd"
        )
        # rate limit: 3 requests per minute for key a (one used above)
        assert (await http.post("/v1/chat/completions", json=_body(5), headers=a)).status_code == 200
        assert (await http.post("/v1/chat/completions", json=_body(5), headers=a)).status_code == 200
        r = await http.post("/v1/chat/completions", json=_body(5), headers=a)
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded" and int(r.headers["retry-after"]) >= 1
        assert (await http.post("/v1/chat/completions", json=_body(5), headers=b)).status_code == 200  # b has no rate limit
        await gw.aclose()

    asyncio.run(go())


def test_concurrent_gateway_requests_on_redis_stay_within_budget(gateway_project: Any, redis_url: str) -> None:
    ws = gateway_project(
        {"keys": {"team-a": {"key_env": "STEWARD_KEY_TEAM_A", "budget": {"tokens": 600, "period": "day"}}}, "cache": {"exact": False}},
        storage={"cache_url": redis_url},
    )

    async def go() -> None:
        from steward.llm.gateway import Gateway

        gw = Gateway(ws)
        gw.provider("local").latency_s = 0.05  # type: ignore[attr-defined]  # requests overlap while in flight
        http = _http(gw)
        auth = {"authorization": f"Bearer {gateway_project.token_a}"}
        rs = await asyncio.gather(*[http.post("/v1/chat/completions", json=_body(100), headers=auth) for _ in range(12)])
        ok = [r for r in rs if r.status_code == 200]
        refused = [r for r in rs if r.status_code == 429]
        assert len(ok) + len(refused) == 12 and refused and ok
        # every concurrent reservation (about 115 tokens each) fit in 600 at the time it was made
        assert len(ok) <= 600 // 110
        from datetime import UTC, datetime

        spent = gw.counters.get(f"bud:key:team-a:tok:{datetime.now(UTC):%Y-%m-%d}")
        assert spent == sum(r.json()["usage"]["total_tokens"] for r in ok) <= 600
        await gw.aclose()

    asyncio.run(go())


def test_tokens_per_minute_window_rolls_over_and_settle_refunds(tmp_path: Path) -> None:
    from steward.backends.kv_sqlite import SqliteKV
    from steward.llm.gateway import BudgetEnforcer, GatewayKey, RateLimited
    from steward.spec import GatewayKeySpec, GatewaySpec

    now = [1_800_000_000.0]
    spec = GatewaySpec.model_validate({"keys": {"k": {"key_env": "X", "rate_limit": {"tokens_per_minute": 100}}}})
    enforcer = BudgetEnforcer(spec, SqliteKV(tmp_path / "kv.db"), clock=lambda: now[0])
    key = GatewayKey("k", GatewayKeySpec(key_env="X", rate_limit={"tokens_per_minute": 100}))  # type: ignore[arg-type]
    first = enforcer.reserve(key, 80, 0)
    with pytest.raises(RateLimited) as exc:
        enforcer.reserve(key, 30, 0)
    assert exc.value.details["unit"] == "tokens" and exc.value.details["used"] == 80
    enforcer.settle(first, 50, 0)  # the answer was shorter than reserved: 30 tokens come back
    enforcer.reserve(key, 30, 0)
    with pytest.raises(RateLimited):
        enforcer.reserve(key, 30, 0)
    now[0] += 60  # next minute: a fresh window
    enforcer.reserve(key, 90, 0)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_team_rate_limit_is_shared_by_the_team_keys(gateway_project: Any, backend: str, request: pytest.FixtureRequest) -> None:
    import time

    storage = {"cache_url": request.getfixturevalue("redis_url")} if backend == "redis" else None
    ws = gateway_project(
        {
            "keys": {
                "team-a": {"key_env": "STEWARD_KEY_TEAM_A", "team": "a", "rate_limit": {"requests_per_minute": 100}},
                "team-b": {"key_env": "STEWARD_KEY_TEAM_B", "team": "a"},
            },
            "teams": {"a": {"rate_limit": {"requests_per_minute": 5, "tokens_per_minute": 100_000}}},
            "cache": {"exact": False},
        },
        storage=storage,
    )
    now = time.time()
    minute = int(now // 60)

    async def go() -> None:
        from steward.llm.gateway import Gateway

        gw = Gateway(ws, clock=lambda: now)  # a fixed clock: the test never straddles two minute windows
        gw.provider("local").latency_s = 0.02  # type: ignore[attr-defined]  # requests overlap while in flight
        http = _http(gw)
        a = {"authorization": f"Bearer {gateway_project.token_a}"}
        b = {"authorization": f"Bearer {gateway_project.token_b}"}
        first = await http.post("/v1/chat/completions", json=_body(5), headers=a)
        assert first.status_code == 200
        # 8 concurrent requests from both keys for the 4 team slots left: exactly 4 get through, atomically
        rs = await asyncio.gather(*[http.post("/v1/chat/completions", json=_body(5), headers=(a if i % 2 else b)) for i in range(8)])
        assert sorted(r.status_code for r in rs) == [200] * 4 + [429] * 4
        refused = next(r for r in rs if r.status_code == 429)
        problem = refused.json()["error"]
        assert problem["code"] == "rate_limit_exceeded" and problem["scope"] == "team" and problem["name"] == "a"
        assert problem["unit"] == "requests" and problem["limit"] == 5 and int(refused.headers["retry-after"]) >= 1
        assert gw.counters.get(f"rl:team:a:req:{minute}") == 5
        # the team's token counter is settled to the actual usage of the admitted requests, like a key's
        used = sum(r.json()["usage"]["total_tokens"] for r in [first, *rs] if r.status_code == 200)
        assert gw.counters.get(f"rl:team:a:tok:{minute}") == used > 0
        # key a's own limit (100) is far away: it was the team's that refused
        assert gw.counters.get(f"rl:team-a:req:{minute}") < 100
        await gw.aclose()

    asyncio.run(go())


def test_team_tokens_per_minute_refuses_and_settles(tmp_path: Path) -> None:
    from steward.backends.kv_sqlite import SqliteKV
    from steward.llm.gateway import BudgetEnforcer, GatewayKey, RateLimited
    from steward.spec import GatewayKeySpec, GatewaySpec

    now = [1_800_000_000.0]
    spec = GatewaySpec.model_validate({"teams": {"t": {"rate_limit": {"tokens_per_minute": 100}}}})
    enforcer = BudgetEnforcer(spec, SqliteKV(tmp_path / "kv.db"), clock=lambda: now[0])
    one, two = GatewayKey("one", GatewayKeySpec(key_env="X", team="t")), GatewayKey("two", GatewayKeySpec(key_env="Y", team="t"))
    first = enforcer.reserve(one, 80, 0)
    with pytest.raises(RateLimited) as exc:
        enforcer.reserve(two, 30, 0)  # the other key of the team draws from the same 100
    assert exc.value.details["scope"] == "team" and exc.value.details["used"] == 80
    enforcer.settle(first, 50, 0)
    enforcer.reserve(two, 30, 0)
    assert enforcer.store.get(f"rl:team:t:tok:{int(now[0] // 60)}") == 80
    enforcer.reserve(GatewayKey("solo", GatewayKeySpec(key_env="Z")), 500, 0)  # a key without a team is not limited
    now[0] += 60
    enforcer.reserve(two, 90, 0)
