"""Sign-in hardening: the failed-attempt limiter's window, lock-out and bound; session revocation."""

from __future__ import annotations

from pathlib import Path

from steward.backends.kv_sqlite import SqliteKV
from steward.governance.signin import AttemptLimiter, Session, SessionRevocations, csrf_matches, new_csrf_token


def test_failures_outside_the_window_do_not_count_and_the_lockout_ends() -> None:
    limiter = AttemptLimiter(max_failures=3, window_s=10, lockout_s=30)
    assert limiter.failed("a", now=0) is None
    assert limiter.failed("a", now=1) is None
    assert limiter.failed("a", now=20) is None  # the first two left the window
    assert limiter.retry_after("a", now=20) is None
    assert limiter.failed("a", now=21) is None
    assert limiter.failed("a", now=22) == 30
    assert limiter.retry_after("a", now=30) == 22
    assert limiter.retry_after("b", now=30) is None  # per client
    assert limiter.retry_after("a", now=52.5) is None


def test_a_success_forgets_the_failures() -> None:
    limiter = AttemptLimiter(max_failures=2, window_s=60, lockout_s=60)
    limiter.failed("a", now=0)
    limiter.succeeded("a")
    assert limiter.failed("a", now=1) is None


def test_memory_stays_bounded_under_a_flood_of_clients() -> None:
    limiter = AttemptLimiter(max_failures=1, window_s=60, lockout_s=60, max_clients=100)
    for i in range(5000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}", now=float(i))
    assert len(limiter._failures) <= 100 and len(limiter._locked_until) <= 100


def test_csrf_tokens_are_random_and_compared_whole() -> None:
    a, b = new_csrf_token(), new_csrf_token()
    assert a != b and len(a) >= 40
    assert csrf_matches(a, a) and not csrf_matches(a, b) and not csrf_matches(a, None) and not csrf_matches(None, None)


def _session(name: str, sid: str, issued: float) -> Session:
    return Session(name, "viewer", sid, issued, issued + 3600)


def test_revocations_are_shared_through_the_cache_store(tmp_path: Path) -> None:
    url = tmp_path / "kv.db"
    one, two = SessionRevocations(SqliteKV(url), max_ttl_s=3600), SessionRevocations(SqliteKV(url), max_ttl_s=3600)
    s1, s2 = _session("alice", "s1", 100.0), _session("alice", "s2", 100.0)
    one.revoke(s1, now=150.0)
    assert two.is_revoked(s1) and not two.is_revoked(s2)  # another replica sees it
    one.revoke_all("alice", now=200.0)
    assert two.is_revoked(s2)
    assert not two.is_revoked(_session("alice", "s3", 201.0))  # issued after the revocation
    assert not two.is_revoked(_session("bob", "s4", 150.0))
    one.revoke_all(None, now=300.0)
    assert two.is_revoked(_session("bob", "s4", 150.0))


def test_revocations_without_a_project_live_in_the_process() -> None:
    rev = SessionRevocations(None, max_ttl_s=60)
    s = _session("alice", "x", 0.0)
    assert not rev.is_revoked(s)
    rev.revoke(s, now=0.0)
    assert rev.is_revoked(s)
