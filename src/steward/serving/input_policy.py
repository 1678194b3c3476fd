"""Input policy: what the server does with values outside what a model was trained on (Issue 15 defect 8).

Values that pass the schema's type check can still be outside the model's experience: a category the
model never saw in training (``carrier: "ZZ"``), or a number outside the data contract's range
(``hour: 99``). The model would answer anyway (an unseen category becomes missing), silently. Each served
feature has a mode, from ``serving.models.NAME.input_policy``:

* ``reject``: a 422 naming the row and field, like any other validation error;
* ``warn`` (default): the prediction is served, with a ``Warning`` header per finding and the counter
  ``steward_input_out_of_policy_total{model,feature,kind}``;
* ``allow``: served, nothing said.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter

from steward.data.contracts import load_contract
from steward.serving.runtime import InputSchema
from steward.spec.serving import InputPolicySpec

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["Finding", "InputPolicy", "contract_ranges", "out_of_policy_counter", "warning_header"]

logger = logging.getLogger(__name__)

Range = tuple[float | None, float | None]

_COUNTERS: dict[int, tuple[CollectorRegistry, Counter]] = {}
_HEADER_MAX = 20  # findings in one Warning header: enough to act on, bounded for proxies


@dataclass(frozen=True)
class Finding:
    """One value outside a feature's policy.

    Attributes:
        row: The request row (0-based).
        feature: The feature name.
        kind: ``unseen_category`` or ``out_of_range``.
        mode: ``reject`` or ``warn`` (``allow`` features are never checked).
        message: What is wrong, for a person (non-ASCII escaped, so it fits an HTTP header).
    """

    row: int
    feature: str
    kind: str
    mode: str
    message: str


@dataclass(frozen=True)
class _Check:
    name: str
    mode: str
    categories: frozenset[str] | None
    low: float | None
    high: float | None


class InputPolicy:
    """The per-feature checks of one served model version: its training categories and contract ranges."""

    def __init__(self, checks: Sequence[_Check]) -> None:
        self._checks = tuple(checks)

    @classmethod
    def build(cls, spec: InputPolicySpec, schema: InputSchema, ranges: Mapping[str, Range]) -> InputPolicy:
        """The checks of ``schema``'s fields under ``spec``, with numeric bounds from ``ranges`` (by feature name)."""
        checks = []
        for f in schema.fields:
            mode = spec.features.get(f.name, spec.default)
            if mode == "allow":
                continue
            cats = frozenset(f.categories) if f.categories is not None and f.kind == "string" else None
            low, high = ranges.get(f.name, (None, None)) if f.kind in ("number", "integer") else (None, None)
            if cats is not None or low is not None or high is not None:
                checks.append(_Check(f.name, mode, cats, low, high))
        return cls(checks)

    def check(self, rows: Sequence[Mapping[str, Any]]) -> list[Finding]:
        """Every value of ``rows`` (already type-checked) outside its feature's categories or range."""
        out: list[Finding] = []
        if not self._checks:
            return out
        for i, r in enumerate(rows):
            for c in self._checks:
                v = r.get(c.name)
                if v is None:
                    continue
                if c.categories is not None:
                    if isinstance(v, str) and v not in c.categories:
                        out.append(Finding(i, c.name, "unseen_category", c.mode, f"row {i}: {c.name} {v!a} not seen in training"))
                    continue
                if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and math.isnan(v)):
                    continue
                if (c.low is not None and v < c.low) or (c.high is not None and v > c.high):
                    bounds = f"[{_num(c.low, '-inf')}, {_num(c.high, 'inf')}]"
                    out.append(Finding(i, c.name, "out_of_range", c.mode, f"row {i}: {c.name} {v!r} outside the contract range {bounds}"))
        return out


def _num(x: float | None, unbounded: str) -> str:
    return unbounded if x is None else f"{x:g}"


def contract_ranges(ws: Workspace | None) -> dict[str, Range]:
    """Numeric ``min``/``max`` of every column of the project's contracts, by column name (the first contract wins).

    A contract that cannot be read gives no ranges (logged): the policy then checks categories only.
    """
    out: dict[str, Range] = {}
    if ws is None:
        return out
    for name in ws.spec.contracts:
        try:
            contract = load_contract(ws.spec.contract_path(name))
        except Exception as exc:  # a bad contract must not stop serving; `steward contract check` reports it
            logger.warning("input policy: contract %s not read (%s); its ranges are not checked", name, exc)
            continue
        for col, cs in contract.columns.items():
            low, high = _bound(cs.min), _bound(cs.max)
            if (low is not None or high is not None) and col not in out:
                out[col] = (low, high)
    return out


def _bound(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def out_of_policy_counter(registry: CollectorRegistry) -> Counter:
    """``steward_input_out_of_policy_total{model,feature,kind}`` in ``registry`` (one per registry)."""
    got = _COUNTERS.get(id(registry))
    if got is None or got[0] is not registry:
        counter = Counter(
            "steward_input_out_of_policy_total",
            "Request values outside a served feature's input policy (unseen category, out of the contract range)",
            ["model", "feature", "kind"],
            registry=registry,
        )
        got = _COUNTERS[id(registry)] = (registry, counter)
    return got[1]


def warning_header(messages: Sequence[str]) -> str:
    """An RFC 7234 ``Warning`` header value: one ``199 - "..."`` per message (at most 20)."""
    shown = [f'199 - "{m.replace(chr(34), chr(39))}"' for m in messages[:_HEADER_MAX]]
    if len(messages) > _HEADER_MAX:
        shown.append(f'199 - "{len(messages) - _HEADER_MAX} more input warnings"')
    return ", ".join(shown)
