"""The ``llm.guardrails`` guards at the gateway: input guards on every message, output guards on answers.

Every chat request's messages go through the injection guard before the cache and the provider see
them: ``user`` messages, and also ``system``, ``developer``, ``assistant`` and ``tool`` messages. The
caller sends all of them, so all of them can carry text an attacker wrote: a system prompt templated
from a web page, an assistant turn replayed from a tampered history, a tool result that fetched a
poisoned document (the classic indirect injection). The PII input guard runs on ``user`` messages
(the user's own words). Each finding becomes a :class:`Verdict` (``flagged:injection``,
``redacted:pii_input``, ``blocked:pii_output``) that the gateway records on its span
(``guardrails.verdicts``) and returns in the ``x-steward-guardrails`` header; a finding in another
role than ``user`` names it (``0.97 in tool message 3``).

Grounding needs the sources an answer should rest on, which only the caller knows (RAG checks it itself).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steward.errors import ValidationFailed
from steward.llm.guardrails import GuardOutcome, guard_input, guard_output

if TYPE_CHECKING:
    from steward.spec import GuardrailsSpec

__all__ = ["GatewayGuards", "Verdict", "raise_if_blocked", "verdict_header"]

logger = logging.getLogger(__name__)

_VERB = {"block": "blocked", "redact": "redacted", "flag": "flagged"}
# Guards whose redact action changes the text; for the others (injection) "redact" can only report.
_REDACTING = ("pii_input", "pii_output", "grounding")


@dataclass(frozen=True)
class Verdict:
    """One guard that fired: its name, what it did and what it found (``EMAIL,PHONE``, ``0.93``)."""

    guard: str
    action: str
    detail: str

    @property
    def label(self) -> str:
        """``<verb>:<guard>``, e.g. ``flagged:injection`` (the header and span form)."""
        return f"{self.action}:{self.guard}"


def verdict_header(verdicts: list[Verdict]) -> str:
    """The ``x-steward-guardrails`` value: distinct labels in order, comma-separated."""
    return ",".join(dict.fromkeys(v.label for v in verdicts))


def _verdicts(spec: GuardrailsSpec, outcome: GuardOutcome) -> list[Verdict]:
    out = []
    for flag in outcome.flags:
        guard, _, detail = flag.partition(":")
        action = getattr(spec, guard).action
        if action == "redact" and guard not in _REDACTING:
            action = "flag"
        out.append(Verdict(guard, _VERB[action], detail))
    return out


def raise_if_blocked(verdicts: list[Verdict], where: str) -> None:
    """Refuse when a guard with action ``block`` fired.

    Raises:
        ValidationFailed: code ``guardrail.<guard>`` (HTTP 422); ``details["guardrails"]`` holds the header value.
    """
    first = next((v for v in verdicts if v.action == "blocked"), None)
    if first is None:
        return
    raise ValidationFailed(
        f"{where} blocked by the {first.guard} guardrail ({first.detail})",
        code=f"guardrail.{first.guard}",
        hint="rephrase the request; the guards and their actions are set under llm.guardrails in steward.yaml",
        details={"guard": first.guard, "finding": first.detail, "guardrails": verdict_header(verdicts)},
    )


class GatewayGuards:
    """Run the guards of a :class:`~steward.spec.GuardrailsSpec` on chat requests and answers.

    Input verdicts are memoised per text (bounded LRU): a conversation resends its whole history
    with every turn, and the injection classifier costs about a millisecond per new text.

    Args:
        memo_entries: Most texts remembered.
        memo_max_chars: Longer texts are not remembered (bounds the memory).
    """

    def __init__(self, memo_entries: int = 2048, memo_max_chars: int = 8192) -> None:
        self.memo_entries = memo_entries
        self.memo_max_chars = memo_max_chars
        self._memo: OrderedDict[tuple[Any, ...], tuple[str, list[Verdict]]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def active(spec: GuardrailsSpec) -> bool:
        """Whether any guard the gateway runs is enabled."""
        return spec.injection.enabled or spec.pii_input.enabled or spec.pii_output.enabled

    def _input(self, spec: GuardrailsSpec, text: str, role: str = "user") -> tuple[str, list[Verdict]]:
        inj, pii = spec.injection, spec.pii_input
        # The spec's settings are part of the key: a changed action or threshold must not reuse old verdicts.
        key = (inj.enabled, inj.action, inj.threshold, pii.enabled, pii.action, role == "user",
               hashlib.blake2b(text.encode(), digest_size=16).digest())  # fmt: skip
        with self._lock:
            found = self._memo.get(key)
            if found is not None:
                self._memo.move_to_end(key)
                return found
        outcome = guard_input(spec, text, raise_on_block=False, role=role)
        result = (outcome.text, _verdicts(spec, outcome))
        if len(text) <= self.memo_max_chars:
            with self._lock:
                self._memo[key] = result
                if len(self._memo) > self.memo_entries:
                    self._memo.popitem(last=False)
        return result

    def _screen(self, spec: GuardrailsSpec, text: str, role: str, where: str, verdicts: list[Verdict]) -> str:
        # ``where`` is empty for a user's message, else names the message in the verdict's detail.
        guarded, found = self._input(spec, text, role)
        verdicts.extend(Verdict(v.guard, v.action, v.detail + where) for v in found)
        return guarded

    def check_input(self, spec: GuardrailsSpec, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Verdict]]:
        """Guard every message's text; return the messages to send on (redacted where a guard redacts) and the verdicts.

        The injection guard reads every role (see :func:`~steward.llm.guardrails.guard_input` for
        what it reads in which role); the PII input guard only ``user`` messages. A
        ``blocked`` verdict is returned, not raised: pass the verdicts to :func:`raise_if_blocked`.
        """
        if not (spec.injection.enabled or spec.pii_input.enabled):
            return messages, []
        verdicts: list[Verdict] = []
        out: list[dict[str, Any]] | None = None
        for i, m in enumerate(messages):
            role = str(m.get("role") or "user")
            is_user = role == "user"
            if not is_user and not spec.injection.enabled:
                continue
            content = m.get("content")
            changed = False
            where = "" if is_user else f" in {role} message {i}"
            if isinstance(content, str):
                new_content: Any = self._screen(spec, content, role, where, verdicts)
                changed = new_content != content
            else:
                parts = []
                for part in content if isinstance(content, list) else []:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        text = self._screen(spec, part["text"], role, where, verdicts)
                        if text != part["text"]:
                            part, changed = {**part, "text": text}, True
                    parts.append(part)
                new_content = parts
            if changed:
                if out is None:
                    out = list(messages)  # copy on write: the caller's list is left as it was
                out[i] = {**m, "content": new_content}
        return (out if out is not None else messages), verdicts

    def check_output(self, spec: GuardrailsSpec, response: dict[str, Any]) -> tuple[dict[str, Any], list[Verdict]]:
        """Guard the answer's text (PII leak); return the response (redacted where the guard redacts) and the verdicts.

        Tool-call arguments are not guarded: they go to the caller's own tools, not to a person.
        A ``blocked`` verdict is returned, not raised: pass the verdicts to :func:`raise_if_blocked`.
        """
        if not spec.pii_output.enabled:
            return response, []
        verdicts: list[Verdict] = []
        choices = response.get("choices")
        if not isinstance(choices, list):
            return response, []
        new_choices: list[Any] | None = None
        for i, choice in enumerate(choices):
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if not isinstance(content, str) or not content:
                continue
            outcome = guard_output(spec, content, None, raise_on_block=False)
            verdicts.extend(_verdicts(spec, outcome))
            if outcome.text != content:
                if new_choices is None:
                    new_choices = list(choices)
                new_choices[i] = {**choice, "message": {**message, "content": outcome.text}}
        if new_choices is not None:
            response = {**response, "choices": new_choices}
        return response, verdicts

    def scan_output(self, spec: GuardrailsSpec, text: str) -> tuple[str, list[Verdict], bool]:
        """Guard an answer that was already streamed to the client.

        The client has the text already, so nothing is enforced on it: every finding is reported as
        ``flagged`` (what did happen), whatever the guard's action. The action still decides what
        the cache keeps: the redacted text (``redact``), nothing (``block``), the text (``flag``).

        Returns:
            The text to cache, the verdicts, and whether the answer may be cached at all.
        """
        if not spec.pii_output.enabled or not text:
            return text, [], True
        outcome = guard_output(spec, text, None, raise_on_block=False)
        found = [Verdict(v.guard, "flagged", v.detail) for v in _verdicts(spec, outcome)]
        return outcome.text, found, not outcome.blocked
