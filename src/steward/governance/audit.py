"""An append-only, hash-chained audit trail of every lifecycle action.

Each entry stores the hash of the previous entry, and its own hash over a
canonical JSON encoding of (seq, ts, actor, action, subject, model, payload,
prev_hash). Editing an entry breaks its hash; dropping one leaves a gap in
``seq`` or a broken link; reordering breaks the links. The newest head is also
kept in ``audit_head`` (and, for local projects, in an anchor file outside the
database) so truncating the tail is detected too, and a trail whose head or
anchor file has gone while entries remain fails verification.

What no chain can detect on its own: someone who can write the database *and*
the anchor file can cut the tail and rewrite both heads consistently, or
replace the whole trail. :meth:`AuditTrail.anchor` gives a head to keep
somewhere they cannot write (a ticket, a log shipper, a notary);
``verify(anchor=...)`` then checks the trail still holds that entry unchanged.

Inputs and outputs are recorded by hash (:func:`digest`) plus small readable
details, so the trail proves what went in and out without copying data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steward._primitives import canonical_json, resolve_actor, utcnow
from steward.backends.base import MetadataStore
from steward.errors import Conflict, ValidationFailed

__all__ = [
    "GENESIS",
    "AuditAnchor",
    "AuditEntry",
    "AuditTrail",
    "AuditVerification",
    "actor_name",
    "digest",
    "file_ref",
    "record_if_changed",
]

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
_HEAD_ID = "main"


actor_name = resolve_actor
"""Who acts, as canonical actor text (the audit trail's name for :func:`steward._primitives.resolve_actor`)."""


def digest(obj: Any) -> str:
    """SHA-256 of a value's canonical JSON (bytes are hashed as they are)."""
    if isinstance(obj, bytes | bytearray):
        return hashlib.sha256(obj).hexdigest()
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def file_ref(path: Path, base: Path | None = None) -> dict[str, str]:
    """A file as an audit output: its path (relative to ``base`` when inside it) and the sha256 of its bytes.

    ``sha256sum PATH`` matches the recorded hash as long as the file is unchanged, so
    an entry points at the exact document (a model card, a report) it produced.
    """
    shown = str(path)
    if base is not None:
        with contextlib.suppress(ValueError):  # outside the project: keep the full path
            shown = path.resolve().relative_to(base.resolve()).as_posix()
    return {"path": shown, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the trail."""

    seq: int
    ts: str
    actor: str
    action: str
    subject: str
    model: str | None
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    def body(self) -> dict[str, Any]:
        """The hashed part of the entry."""
        return {
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "model": self.model,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
        }

    def computed_hash(self) -> str:
        """The hash this entry should carry."""
        return digest(self.body())


@dataclass
class AuditVerification:
    """The result of :meth:`AuditTrail.verify`."""

    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str | None = None
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AuditAnchor:
    """A head of the trail to keep outside Steward: entry ``seq`` had hash ``hash``.

    Its text form is ``SEQ:HASH`` (what ``steward audit anchor`` prints and ``verify --anchor`` reads).
    """

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> AuditAnchor:
        """Read ``SEQ:HASH`` (as printed by :meth:`AuditTrail.anchor`).

        Raises:
            ValidationFailed: the text is not ``SEQ:HASH`` with a 64-hex-digit hash.
        """
        seq_text, sep, h = text.strip().partition(":")
        if not sep or not seq_text.isdigit() or not re.fullmatch(r"[0-9a-f]{64}", h):
            raise ValidationFailed(
                f"not an audit anchor: {text!r}",
                code="audit.bad_anchor",
                hint="pass the SEQ:HASH text that 'steward audit anchor' printed",
            )
        return cls(int(seq_text), h)


_FILTER_COLUMNS = frozenset({"model", "action", "actor"})


class AuditTrail:
    """The audit trail in a metadata store (SQLite by default, PostgreSQL when configured).

    Args:
        store: The metadata store (migrated).
        anchor_path: Optional file that mirrors the head hash outside the database.
    """

    def __init__(self, store: MetadataStore, anchor_path: Path | None = None) -> None:
        self.store = store
        self.anchor_path = anchor_path

    def append(
        self,
        action: str,
        subject: str,
        *,
        actor: str | None = None,
        model: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry and return it.

        Args:
            action: What happened, dotted (``ingest.batch``, ``registry.alias``, ``rollout.step``...).
            subject: What it happened to (``table:silver.flights``, ``model:flights@3``...).
            actor: Who did it (default: :func:`~steward._primitives.resolve_actor`; a bare name is a user).
            model: The registered model concerned, for ``steward audit log --model``.
            inputs: Inputs; each value is recorded by hash beside its small readable form.
            outputs: Outputs, likewise.
            details: Small readable details (reasons, numbers).
        """
        payload: dict[str, Any] = {}
        if inputs:
            payload["inputs"] = {k: {"sha256": digest(v), "value": _small(v)} for k, v in inputs.items()}
        if outputs:
            payload["outputs"] = {k: {"sha256": digest(v), "value": _small(v)} for k, v in outputs.items()}
        if details:
            payload["details"] = json.loads(canonical_json(dict(details)))
        who = resolve_actor(actor)
        for _attempt in range(20):
            try:
                with self.store.transaction():
                    head = self.store.fetchone("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                    seq = int(head["seq"]) + 1 if head else 1
                    prev = str(head["hash"]) if head else GENESIS
                    entry = AuditEntry(seq, utcnow(), who, action, subject, model, payload, prev, "")
                    h = entry.computed_hash()
                    entry = AuditEntry(seq, entry.ts, who, action, subject, model, payload, prev, h)
                    self.store.execute(
                        "INSERT INTO audit_log (seq, ts, actor, action, subject, model, payload, prev_hash, hash) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (seq, entry.ts, who, action, subject, model, canonical_json(payload), prev, h),
                    )
                    self.store.execute(
                        "INSERT INTO audit_head (id, seq, hash) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                        (_HEAD_ID, seq, h),
                    )
                    # inside the transaction, so anchors are written in chain order
                    self._write_anchor(seq, h)
                break
            except Exception as exc:  # a concurrent appender took this seq: retry on the new head
                if "unique" not in str(exc).lower() and "duplicate" not in str(exc).lower():
                    raise
        else:  # pragma: no cover - pathological contention
            raise Conflict("could not append to the audit trail under contention", code="audit.contention")
        logger.debug("audit %s %s by %s", action, subject, who)
        return entry

    def _write_anchor(self, seq: int, h: str) -> None:
        if self.anchor_path is None:
            return
        self.anchor_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.anchor_path.with_name(f"{self.anchor_path.name}.{os.getpid()}.tmp")
        tmp.write_text(f"{seq} {h}\n")
        tmp.replace(self.anchor_path)

    def _rows(self, where: str = "", params: tuple[Any, ...] = ()) -> Iterator[AuditEntry]:
        for r in self.store.fetchall(
            f"SELECT seq, ts, actor, action, subject, model, payload, prev_hash, hash FROM audit_log {where} ORDER BY seq",
            params,
        ):
            yield AuditEntry(
                int(r["seq"]),
                str(r["ts"]),
                str(r["actor"]),
                str(r["action"]),
                str(r["subject"]),
                r["model"],
                json.loads(r["payload"]),
                str(r["prev_hash"]),
                str(r["hash"]),
            )

    def entries(self, *, model: str | None = None, action: str | None = None, limit: int | None = None) -> list[AuditEntry]:
        """Entries in order, optionally for one model or one action prefix."""
        clauses, params = [], []
        if model:
            clauses.append("model = ?")
            params.append(model)
        if action:
            clauses.append("action LIKE ?")
            params.append(f"{action}%")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        out = list(self._rows(where, tuple(params)))
        return out[-limit:] if limit else out

    def distinct(self, column: str) -> list[str]:
        """The values ``column`` takes across the trail, sorted (filter choices: ``model``, ``action`` or ``actor``).

        Raises:
            ValueError: another column.
        """
        if column not in _FILTER_COLUMNS:
            raise ValueError(f"not a filter column of the audit trail: {column!r}")
        rows = self.store.fetchall(f"SELECT DISTINCT {column} AS v FROM audit_log WHERE {column} IS NOT NULL ORDER BY {column}")
        return [str(r["v"]) for r in rows]

    def anchor(self) -> AuditAnchor | None:
        """The newest entry's position and hash, to keep outside Steward (``None`` for an empty trail)."""
        head = self.store.fetchone("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        return AuditAnchor(int(head["seq"]), str(head["hash"])) if head else None

    def verify(self, anchor: AuditAnchor | None = None) -> AuditVerification:
        """Check every link; name the first entry that was edited, dropped or reordered.

        Args:
            anchor: A head kept outside Steward (:meth:`anchor`); the trail must still hold
                that entry with that hash, so truncation or rewriting behind it is caught even
                when the database's head and the anchor file were rewritten too.
        """
        rows = list(self._rows())
        # Which hashes are still referenced: an entry whose content changed and whose
        # hash was recomputed carries a hash that nothing links to, while its
        # successor keeps linking to the old hash that no entry carries any more.
        present_hashes = {e.hash for e in rows}
        linked_hashes = {e.prev_hash for e in rows}
        prev = GENESIS
        prev_entry: AuditEntry | None = None
        expected_seq = 1
        count = 0
        problems: list[str] = []
        first_bad: int | None = None
        for e in rows:
            count += 1
            problem = None
            bad = e.seq
            if e.seq != expected_seq:
                problem = f"entry {expected_seq} is missing (next present is {e.seq}): dropped or reordered"
                bad = expected_seq
            elif e.prev_hash != prev:
                if prev_entry is not None and _rehashed(prev_entry, e, present_hashes, linked_hashes):
                    problem = (
                        f"entry {prev_entry.seq} ({prev_entry.action} {prev_entry.subject}) was edited and its hash "
                        f"recomputed: entry {e.seq} still links to its original hash"
                    )
                    bad = prev_entry.seq
                else:
                    problem = f"entry {e.seq} does not link to entry {e.seq - 1}: reordered, or its predecessor was edited"
            elif e.computed_hash() != e.hash:
                problem = f"entry {e.seq} ({e.action} {e.subject}) was edited: its content no longer matches its hash"
            if problem:
                problems.append(problem)
                first_bad = first_bad if first_bad is not None else bad
            prev = e.hash
            prev_entry = e
            expected_seq = e.seq + 1
        head = self.store.fetchone("SELECT seq, hash FROM audit_head WHERE id = ?", (_HEAD_ID,))
        last_seq = expected_seq - 1
        if head and int(head["seq"]) == last_seq and count and str(head["hash"]) != prev:
            # same length, different hash: the newest entry was rewritten (nothing links to it but the head)
            problems.append(f"entry {last_seq} was edited and its hash recomputed: it no longer matches the recorded head")
            first_bad = first_bad if first_bad is not None else last_seq
        elif head and int(head["seq"]) != last_seq:
            problems.append(f"the trail ends at entry {last_seq} but its head says {head['seq']}: entries were dropped from the end")
            first_bad = first_bad if first_bad is not None else min(last_seq + 1, int(head["seq"]))
        if head is None and count:
            # every append writes the head in the same transaction, so entries without one mean it was removed
            problems.append(f"the trail has {count} entries but no recorded head: the head was deleted (tail truncation hides behind this)")
            first_bad = first_bad if first_bad is not None else last_seq
        if self.anchor_path is not None and self.anchor_path.exists():
            a_seq, _, a_hash = self.anchor_path.read_text().strip().partition(" ")
            if int(a_seq) > last_seq or (int(a_seq) == last_seq and a_hash != prev):
                problems.append(f"the anchor file records entry {a_seq}, the database ends at {last_seq}")
                first_bad = first_bad if first_bad is not None else min(int(a_seq), last_seq + 1)
        elif self.anchor_path is not None and count:
            problems.append(f"the anchor file {self.anchor_path} is missing while the trail has {count} entries")
            first_bad = first_bad if first_bad is not None else last_seq
        if anchor is not None:
            kept = next((e for e in rows if e.seq == anchor.seq), None)
            if kept is None:
                problems.append(f"the external anchor names entry {anchor.seq}, but the trail ends at {last_seq}: entries were removed")
                first_bad = first_bad if first_bad is not None else min(anchor.seq, last_seq + 1)
            elif kept.hash != anchor.hash:
                problems.append(f"entry {anchor.seq} no longer has the hash of the external anchor: the trail was rewritten")
                first_bad = first_bad if first_bad is not None else anchor.seq
        ok = not problems
        return AuditVerification(ok, count, first_bad, problems[0] if problems else None, problems)


def _rehashed(before: AuditEntry, after: AuditEntry, present_hashes: set[str], linked_hashes: set[str]) -> bool:
    """Whether a broken link ``before`` -> ``after`` means ``before`` was edited and re-hashed.

    Both entries are self-consistent, ``after`` links to a hash no entry carries, and
    nothing links to ``before``'s current hash. A reordering instead leaves entries
    whose hash no longer matches their position (``seq`` is hashed) or links that
    point at other entries still present.
    """
    return (
        before.computed_hash() == before.hash
        and after.computed_hash() == after.hash
        and after.prev_hash not in present_hashes
        and before.hash not in linked_hashes
    )


def record_if_changed(
    trail: AuditTrail,
    action: str,
    subject: str,
    value: Any,
    *,
    first_action: str | None = None,
    field: str = "config",
    model: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry | None:
    """Append an entry for ``subject`` only when ``value`` differs from the last recorded one.

    Used for configuration that lives in files rather than in API calls (contracts,
    budgets, rate limits): the first sighting (``first_action``, default ``action``)
    and every change after it are on the trail; an unchanged value adds nothing.
    """
    h = digest(value)
    family = action.rsplit(".", 1)[0] + "." if first_action else action
    seen = [e for e in trail.entries(action=family) if e.subject == subject]
    previous = seen[-1].payload.get("outputs", {}).get(field, {}).get("sha256") if seen else None
    if previous == h:
        return None
    name = action if seen or first_action is None else first_action
    return trail.append(name, subject, model=model, inputs={"previous_sha256": previous}, outputs={field: value}, details=details)


def _small(value: Any) -> Any:
    """Keep readable values small in the trail (hashes carry the rest)."""
    text = canonical_json(value)
    return value if len(text) <= 512 else f"<{len(text)} bytes>"
