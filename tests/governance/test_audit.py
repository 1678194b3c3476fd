"""Tamper detection of the audit trail, on SQLite and the real PostgreSQL."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from steward.backends.sql_metadata import open_metadata_store
from steward.errors import ValidationFailed
from steward.governance.audit import AuditAnchor, AuditEntry, AuditTrail, digest


@pytest.fixture(params=["sqlite", "postgresql"])
def trail(request: pytest.FixtureRequest, tmp_path: Path) -> AuditTrail:
    url = f"sqlite:///{tmp_path / 'm.db'}" if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))
    t = AuditTrail(open_metadata_store(url), anchor_path=tmp_path / "audit.head")
    for i in range(5):
        t.append("registry.alias", f"model:m@{i}", actor="tester", model="m", inputs={"v": i}, details={"why": f"step {i}"})
    return t


def test_intact_chain_verifies(trail: AuditTrail) -> None:
    res = trail.verify()
    assert res.ok
    assert res.entries == 5
    assert [e.seq for e in trail.entries(model="m")] == [1, 2, 3, 4, 5]
    assert trail.entries()[0].payload["inputs"]["v"]["sha256"] == digest(0)


def test_edit_is_detected_and_named(trail: AuditTrail) -> None:
    trail.store.execute("UPDATE audit_log SET payload = ? WHERE seq = 3", (json.dumps({"details": {"why": "forged"}}),))
    res = trail.verify()
    assert not res.ok
    assert res.first_bad_seq == 3
    assert "entry 3" in (res.problem or "")


def test_dropped_entry_is_detected(trail: AuditTrail) -> None:
    trail.store.execute("DELETE FROM audit_log WHERE seq = 2")
    res = trail.verify()
    assert not res.ok
    assert res.first_bad_seq == 2


def test_dropped_tail_is_detected(trail: AuditTrail) -> None:
    trail.store.execute("DELETE FROM audit_log WHERE seq = 5")
    res = trail.verify()
    assert not res.ok
    assert res.first_bad_seq == 5


def test_reordered_entries_are_detected(trail: AuditTrail) -> None:
    rows = {r["seq"]: r for r in trail.store.fetchall("SELECT * FROM audit_log WHERE seq IN (2, 3)")}
    # swap the contents of entries 2 and 3 (keeping their positions)
    for seq, other in ((2, 3), (3, 2)):
        r = rows[other]
        trail.store.execute(
            "UPDATE audit_log SET ts = ?, subject = ?, payload = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (r["ts"], r["subject"], r["payload"], r["prev_hash"], r["hash"], seq),
        )
    res = trail.verify()
    assert not res.ok
    assert res.first_bad_seq == 2


def test_concurrent_appends_keep_one_chain(trail: AuditTrail) -> None:
    def worker(n: int) -> None:
        for i in range(10):
            trail.append("test.concurrent", f"w{n}", details={"i": i})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res = trail.verify()
    assert res.ok
    assert res.entries == 45


def _rewrite_and_rehash(trail: AuditTrail, seq: int, subject: str) -> None:
    """Edit an entry and recompute its own hash, as a forger with database access would."""
    (entry,) = [e for e in trail.entries() if e.seq == seq]
    forged = AuditEntry(entry.seq, entry.ts, entry.actor, entry.action, subject, entry.model, entry.payload, entry.prev_hash, "")
    trail.store.execute("UPDATE audit_log SET subject = ?, hash = ? WHERE seq = ?", (subject, forged.computed_hash(), seq))


def test_edit_with_recomputed_hash_names_the_edited_entry(trail: AuditTrail) -> None:
    _rewrite_and_rehash(trail, 3, "model:forged@3")
    res = trail.verify()
    assert not res.ok
    assert res.first_bad_seq == 3
    assert (res.problem or "").startswith("entry 3 (registry.alias model:forged@3) was edited")


def test_edit_of_the_newest_entry_with_recomputed_hash_is_named(trail: AuditTrail) -> None:
    _rewrite_and_rehash(trail, 5, "model:forged@5")
    res = trail.verify()
    assert not res.ok
    assert res.first_bad_seq == 5
    assert "entry 5 was edited" in (res.problem or "")


def test_reordered_and_rehashed_entries_are_not_blamed_on_their_predecessor(trail: AuditTrail) -> None:
    # move entry 3's content to position 2 and entry 2's to 3, recomputing both hashes
    # (links kept as they were): entry 1 is untouched and must not be named
    by_seq = {e.seq: e for e in trail.entries()}
    for seq, other in ((2, 3), (3, 2)):
        o = by_seq[other]
        moved = AuditEntry(seq, o.ts, o.actor, o.action, o.subject, o.model, o.payload, o.prev_hash, "")
        trail.store.execute(
            "UPDATE audit_log SET ts = ?, subject = ?, payload = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (o.ts, o.subject, json.dumps(o.payload), o.prev_hash, moved.computed_hash(), seq),
        )
    res = trail.verify()
    assert not res.ok
    assert res.first_bad_seq == 2


def _truncate_with_heads(trail: AuditTrail, keep: int) -> None:
    """Cut the tail after ``keep`` and delete both heads: what an attacker with database and disk access does."""
    trail.store.execute("DELETE FROM audit_log WHERE seq > ?", (keep,))
    trail.store.execute("DELETE FROM audit_head")
    assert trail.anchor_path is not None
    trail.anchor_path.unlink()


def test_truncation_that_also_deletes_the_head_and_anchor_file_fails(trail: AuditTrail) -> None:
    _truncate_with_heads(trail, keep=3)
    res = trail.verify()
    assert not res.ok
    assert any("no recorded head" in p for p in res.problems)
    assert any("anchor file" in p and "missing" in p for p in res.problems)


def test_missing_head_alone_fails(trail: AuditTrail) -> None:
    trail.store.execute("DELETE FROM audit_head")
    res = trail.verify()
    assert not res.ok
    assert "no recorded head" in (res.problem or "")


def test_external_anchor_catches_consistent_truncation(trail: AuditTrail) -> None:
    kept = trail.anchor()
    assert kept is not None and kept.seq == 5
    # cut two entries and rewrite both heads so that the chain alone looks intact
    trail.store.execute("DELETE FROM audit_log WHERE seq > 3")
    last = trail.entries()[-1]
    trail.store.execute("UPDATE audit_head SET seq = ?, hash = ?", (last.seq, last.hash))
    assert trail.anchor_path is not None
    trail.anchor_path.write_text(f"{last.seq} {last.hash}\n")
    assert trail.verify().ok  # what the chain cannot see by itself
    res = trail.verify(anchor=AuditAnchor.parse(str(kept)))
    assert not res.ok
    assert "external anchor names entry 5" in (res.problem or "")


def test_external_anchor_stays_valid_as_the_trail_grows(trail: AuditTrail) -> None:
    kept = trail.anchor()
    assert kept is not None
    trail.append("registry.alias", "model:m@9", actor="tester", model="m")
    assert trail.verify(anchor=kept).ok
    # a rewritten anchored entry is named
    trail.store.execute("UPDATE audit_log SET hash = ? WHERE seq = ?", ("f" * 64, kept.seq))
    res = trail.verify(anchor=kept)
    assert any("no longer has the hash of the external anchor" in p for p in res.problems)


def test_anchor_text_is_validated() -> None:
    with pytest.raises(ValidationFailed) as info:
        AuditAnchor.parse("5-deadbeef")
    assert info.value.code == "audit.bad_anchor"
    assert str(AuditAnchor.parse("5:" + "a" * 64)) == "5:" + "a" * 64
