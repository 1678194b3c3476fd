"""Classifying a contract change (private; import from ``steward.data.contracts``).

A change is *compatible* when every row the old contract accepted is still
accepted and every silver column keeps its type (a new nullable column, a
widened range, an added allowed value, a relaxed rule). Anything that can
reject a row the old contract accepted, or that changes silver's shape for
readers, is *breaking* (a type change, a dropped column, a tightened rule, a new
non-nullable column, a narrowed range, a removed allowed value, a key change).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from steward.data._contract_model import ColumnSpec, Contract

__all__ = ["ContractChange", "ContractDiff", "diff_contracts"]

logger = logging.getLogger(__name__)

Kind = Literal["compatible", "breaking"]


@dataclass(frozen=True)
class ContractChange:
    """One difference between two contracts.

    Attributes:
        kind: ``compatible`` or ``breaking``.
        path: Key path in the contract, e.g. ``columns.month.max``.
        description: What changed, old → new.
    """

    kind: Kind
    path: str
    description: str


@dataclass
class ContractDiff:
    """Every change between an old and a new contract."""

    old_version: str
    new_version: str
    changes: list[ContractChange] = field(default_factory=list)

    @property
    def breaking(self) -> bool:
        """Whether any change is breaking."""
        return any(c.kind == "breaking" for c in self.changes)

    @property
    def breaking_changes(self) -> list[ContractChange]:
        """Only the breaking changes."""
        return [c for c in self.changes if c.kind == "breaking"]


def _fmt(value: Any) -> str:
    return "none" if value is None else repr(value) if isinstance(value, str) else str(value)


def _bound(changes: list[ContractChange], path: str, which: str, old: Any, new: Any) -> None:
    if old == new:
        return
    if new is None:
        changes.append(ContractChange("compatible", path, f"{which} bound {_fmt(old)} removed (range widened)"))
    elif old is None:
        changes.append(ContractChange("breaking", path, f"{which} bound {_fmt(new)} added (range narrowed)"))
    else:
        try:
            wider = new < old if which == "min" else new > old
        except TypeError:  # a type change made the bounds incomparable; the type change is reported too
            changes.append(ContractChange("breaking", path, f"{which} {_fmt(old)} → {_fmt(new)}"))
            return
        if wider:
            changes.append(ContractChange("compatible", path, f"{which} {_fmt(old)} → {_fmt(new)} (range widened)"))
        else:
            changes.append(ContractChange("breaking", path, f"{which} {_fmt(old)} → {_fmt(new)} (range narrowed)"))


def _column(changes: list[ContractChange], name: str, old: ColumnSpec, new: ColumnSpec, old_strict: bool, new_strict: bool) -> None:
    p = f"columns.{name}"
    if old.type != new.type:
        changes.append(ContractChange("breaking", f"{p}.type", f"type {old.type} → {new.type}"))
    if old_strict != new_strict:
        if new_strict:
            changes.append(ContractChange("breaking", f"{p}.nullable", "nullable → not nullable (tightened)"))
        else:
            changes.append(ContractChange("compatible", f"{p}.nullable", "not nullable → nullable (relaxed)"))
    _bound(changes, f"{p}.min", "min", old.min, new.min)
    _bound(changes, f"{p}.max", "max", old.max, new.max)
    if old.allowed != new.allowed:
        if new.allowed is None:
            changes.append(ContractChange("compatible", f"{p}.allowed", "allowed-values list removed (any value accepted)"))
        elif old.allowed is None:
            changes.append(ContractChange("breaking", f"{p}.allowed", f"allowed-values list added: {', '.join(map(_fmt, new.allowed))}"))
        else:
            added = [v for v in new.allowed if v not in old.allowed]
            removed = [v for v in old.allowed if v not in new.allowed]
            if added:
                changes.append(ContractChange("compatible", f"{p}.allowed", f"allowed value(s) added: {', '.join(map(_fmt, added))}"))
            if removed:
                changes.append(ContractChange("breaking", f"{p}.allowed", f"allowed value(s) removed: {', '.join(map(_fmt, removed))}"))
    if old.regex != new.regex:
        if new.regex is None:
            changes.append(ContractChange("compatible", f"{p}.regex", f"regex {old.regex} removed (relaxed)"))
        elif old.regex is None:
            changes.append(ContractChange("breaking", f"{p}.regex", f"regex {new.regex} added (tightened)"))
        else:
            # Whether one regex accepts a superset of another is undecidable in general; assume not.
            changes.append(
                ContractChange("breaking", f"{p}.regex", f"regex {old.regex} → {new.regex} (cannot prove it accepts every old value)")
            )
    if old.unique != new.unique:
        if new.unique:
            changes.append(ContractChange("breaking", f"{p}.unique", "unique added (tightened)"))
        else:
            changes.append(ContractChange("compatible", f"{p}.unique", "unique removed (relaxed)"))
    if old.description != new.description:
        changes.append(ContractChange("compatible", f"{p}.description", "description changed"))


def diff_contracts(old: Contract, new: Contract) -> ContractDiff:
    """Classify every change from ``old`` to ``new`` as compatible or breaking.

    Args:
        old: The contract in force.
        new: The proposed contract.

    Returns:
        The changes, in contract order (identity, key, columns, rules, freshness).
    """
    changes: list[ContractChange] = []
    if old.name != new.name:
        changes.append(ContractChange("breaking", "name", f"name {old.name!r} → {new.name!r} (a different dataset)"))
    if old.version != new.version:
        changes.append(ContractChange("compatible", "version", f"version {old.version} → {new.version}"))
    if old.description != new.description:
        changes.append(ContractChange("compatible", "description", "description changed"))
    if old.key != new.key:
        changes.append(ContractChange("breaking", "key", f"key [{', '.join(old.key)}] → [{', '.join(new.key)}] (deduplication changes)"))
    if old.event_time != new.event_time:
        changes.append(
            ContractChange(
                "breaking", "event_time", f"event_time {_fmt(old.event_time)} → {_fmt(new.event_time)} (silver partitioning changes)"
            )
        )

    old_strict, new_strict = old.not_nullable(), new.not_nullable()
    for name, spec in old.columns.items():
        if name not in new.columns:
            changes.append(ContractChange("breaking", f"columns.{name}", f"column {name} ({spec.type}) dropped"))
        else:
            _column(changes, name, spec, new.columns[name], name in old_strict, name in new_strict)
    for name, spec in new.columns.items():
        if name in old.columns:
            continue
        if name in new_strict:
            changes.append(
                ContractChange("breaking", f"columns.{name}", f"column {name} ({spec.type}) added as not nullable (old rows lack it)")
            )
        else:
            changes.append(ContractChange("compatible", f"columns.{name}", f"column {name} ({spec.type}) added as nullable"))
    shared = [n for n in old.columns if n in new.columns]
    if shared != [n for n in new.columns if n in old.columns]:
        changes.append(ContractChange("compatible", "columns", "column order changed (silver is read by name)"))

    old_rules = {r.name: r for r in old.rules}
    new_rules = {r.name: r for r in new.rules}
    for i, (name, rule) in enumerate(old_rules.items()):
        if name not in new_rules:
            changes.append(ContractChange("compatible", f"rules.{i}", f"rule {name} removed (relaxed)"))
        elif " ".join(rule.expr.split()) != " ".join(new_rules[name].expr.split()):
            changes.append(
                ContractChange(
                    "breaking",
                    f"rules.{name}.expr",
                    f"rule {name}: {rule.expr!r} → {new_rules[name].expr!r} (cannot prove it accepts every old row)",
                )
            )
        elif rule.description != new_rules[name].description:
            changes.append(ContractChange("compatible", f"rules.{name}.description", f"rule {name}: description changed"))
    for i, (name, rule) in enumerate(new_rules.items()):
        if name not in old_rules:
            changes.append(ContractChange("breaking", f"rules.{i}", f"rule {name} added: {rule.expr!r} (tightened)"))

    # Freshness only ever warns, it never rejects a row: every change to it is compatible.
    of, nf = old.freshness, new.freshness
    if of != nf:
        before = f"{of.column} within {of.max_age}" if of else "none"
        after = f"{nf.column} within {nf.max_age}" if nf else "none"
        changes.append(ContractChange("compatible", "freshness", f"freshness {before} → {after} (a warning only, never rejects rows)"))
    diff = ContractDiff(old_version=old.version, new_version=new.version, changes=changes)
    logger.debug("contract diff %s: %d change(s), breaking=%s", new.name, len(changes), diff.breaking)
    return diff
