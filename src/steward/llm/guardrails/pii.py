"""PII detection and redaction: emails, phone numbers, payment cards, IBANs, US SSNs, UK NINOs.

Patterns find candidates; checksums and issuing rules confirm them, so an order
number of sixteen digits is not a card unless it passes the Luhn check, and an
IBAN must pass ISO 13616 mod-97. Overlapping findings keep the stronger type
(a card number is not also reported as a phone number).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PII_TYPES", "PiiFinding", "detect_pii", "iban_valid", "luhn_valid", "nino_valid", "redact_pii", "ssn_valid"]

PII_TYPES = ("EMAIL", "CARD", "IBAN", "SSN", "NINO", "PHONE")


@dataclass(frozen=True)
class PiiFinding:
    """One PII match: its type and character span in the text."""

    kind: str
    start: int
    end: int
    value: str


_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![\w-])")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])")
_NINO = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2}) ?(\d{2}) ?(\d{2}) ?(\d{2}) ?([A-Da-d])(?![A-Za-z0-9])")
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,5}\)[ .-]?|\d{2,5}[ .-])\d{3,5}(?:[ .-]?\d{3,4})?(?![\w-])(?![ .-]\d)"
)

# IBAN lengths per country (ISO 13616 registry, the common ones); others only need mod-97.
_IBAN_LEN = {
    "GB": 22,
    "DE": 22,
    "FR": 27,
    "NL": 18,
    "ES": 24,
    "CH": 21,
    "BE": 16,
    "IT": 27,
    "IE": 22,
    "AT": 20,
    "PL": 28,
    "PT": 25,
    "SE": 24,
}
_NINO_BAD_PREFIX = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a card number's digits."""
    d = [int(c) for c in digits if c.isdigit()]
    if len(d) < 13:
        return False
    total = 0
    for i, x in enumerate(reversed(d)):
        if i % 2 == 1:
            x *= 2
            if x > 9:
                x -= 9
        total += x
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616: known country length (when listed) and the mod-97 check equals 1."""
    s = iban.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", s):
        return False
    if s[:2] in _IBAN_LEN and len(s) != _IBAN_LEN[s[:2]]:
        return False
    moved = s[4:] + s[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """US SSN issuing rules: no 000/666/9xx area, no 00 group, no 0000 serial."""
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def nino_valid(prefix: str) -> bool:
    """UK National Insurance number prefix rules (HMRC NIM39110)."""
    p = prefix.upper()
    return p[0] not in "DFIQUV" and p[1] not in "DFIOQUV" and p not in _NINO_BAD_PREFIX


def detect_pii(text: str) -> list[PiiFinding]:
    """All PII findings in ``text``, ordered by position, without overlaps."""
    found: list[PiiFinding] = []
    for m in _EMAIL.finditer(text):
        found.append(PiiFinding("EMAIL", m.start(), m.end(), m.group(0)))
    for m in _IBAN.finditer(text):
        if iban_valid(m.group(0)):
            found.append(PiiFinding("IBAN", m.start(), m.end(), m.group(0)))
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            found.append(PiiFinding("CARD", m.start(), m.end(), m.group(0)))
    for m in _SSN.finditer(text):
        if ssn_valid(m.group(1), m.group(2), m.group(3)):
            found.append(PiiFinding("SSN", m.start(), m.end(), m.group(0)))
    for m in _NINO.finditer(text):
        if m.group(1).isupper() and nino_valid(m.group(1)) and m.group(5).isupper():
            found.append(PiiFinding("NINO", m.start(), m.end(), m.group(0)))
    for m in _PHONE.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        value = m.group(0).strip()
        # Two bare digit groups (a port range, an id) are not a phone number: ask for an
        # international prefix, an area code in parentheses, a trunk 0, or three groups.
        shaped = value.startswith(("+", "(", "0")) or len(re.findall(r"\d+", value)) >= 3
        if 9 <= len(digits) <= 15 and shaped:
            found.append(PiiFinding("PHONE", m.start(), m.end(), value))
    # Earlier types in PII_TYPES win overlaps (a Luhn-valid card is not also a phone number).
    rank = {k: i for i, k in enumerate(PII_TYPES)}
    found.sort(key=lambda f: (rank[f.kind], f.start))
    kept: list[PiiFinding] = []
    for f in found:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def redact_pii(text: str, findings: list[PiiFinding] | None = None) -> str:
    """``text`` with every finding replaced by ``[TYPE]``."""
    findings = detect_pii(text) if findings is None else findings
    out = []
    pos = 0
    for f in sorted(findings, key=lambda f: f.start):
        out.append(text[pos : f.start])
        out.append(f"[{f.kind}]")
        pos = f.end
    out.append(text[pos:])
    return "".join(out)
