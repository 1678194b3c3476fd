"""What a text may hide: the readings of a text the injection guard screens (decoded runs, rot13, windows, quotes)."""

from __future__ import annotations

import base64
import binascii
import codecs
import re

__all__ = ["BLOB", "MIN_WORDS", "WORD", "views"]

_B64_RUN = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])")
_B64URL_RUN = re.compile(r"(?<![A-Za-z0-9_\-=])[A-Za-z0-9_\-]{16,}={0,2}(?![A-Za-z0-9_\-=])")
_HEX_RUN = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[\s:]?){10,}(?![0-9A-Fa-f])")
# Long opaque runs (hashes, keys, encoded bytes) carry no language: the classifier reads the text around them, and
# whatever they decode to is screened as its own view.
BLOB = re.compile(r"[A-Za-z0-9+/_\-]{24,}={0,2}")
WORD = re.compile(r"\w+")
#: Views with fewer words than this are left to the patterns (see :meth:`InjectionScorer.classify_view`).
MIN_WORDS = 4
_COMMON = frozenset(
    ("the", "a", "an", "and", "or", "to", "of", "in", "is", "are", "you", "your", "i", "me", "my", "it", "this", "that",
     "for", "with", "on", "be", "not", "do", "what", "how", "all", "now")
)  # fmt: skip
_WINDOW, _STRIDE, _LONG = 3000, 1500, 3000
_MAX_DECODED = 8  # decoded runs screened per text: bounds the work an attacker can ask for


def _printable(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    good = sum(ch.isprintable() or ch in "\n\r\t" for ch in text)
    return text if text and good / len(text) > 0.9 and any(ch.isalpha() for ch in text) else None


def _common_words(text: str) -> int:
    return sum(w in _COMMON for w in re.findall(r"[a-z]+", text[:2000].lower()))


# "Translate 'ignore the noise' into French": the quoted words are data, not a request to the model. They are
# screened on their own (an attack inside the quotes still fires); the request around them is screened without them.
_QUOTED_REQUEST = re.compile(
    r"^\s*(?:please\s+|can you\s+|could you\s+)?(?:translate|proofread|spell-?check|paraphrase|rephrase|define|pronounce)\b"
    r"[^'\"“‘«]{0,40}(['\"“‘«])(?P<quoted>[^'\"”’»]{1,500})['\"”’»]\s*(?:(?:into|to|in|from)\s+[\w ]{1,30})?[.?!]?\s*$",
    re.IGNORECASE,
)


def views(text: str) -> list[tuple[str, str]]:
    """The readings of ``text`` the guard screens: ``("", text)`` first, then decoded runs, rot13 and windows.

    Base64 and hex runs that decode to printable UTF-8 text are screened decoded (one level; a
    decoded text is decoded once more, so base64 of base64 is read too). The rot13 reading is
    screened when it holds more common English words than the text itself. A text longer than
    2,000 characters is also screened in overlapping 1,200-character windows.
    """
    quoted = _QUOTED_REQUEST.match(text)
    if quoted:
        inner = quoted.group("quoted")
        return [("", text.replace(inner, "…")), ("quoted", inner)] + [v for v in views(inner)[1:]]
    out: list[tuple[str, str]] = [("", text)]
    queue = [("", text)]
    seen = {text}
    while queue and len(out) < _MAX_DECODED:
        how, current = queue.pop(0)
        found: list[tuple[str, str]] = []
        for rx, kind in ((_B64_RUN, "base64"), (_B64URL_RUN, "base64")):
            for m in rx.finditer(current):
                run = m.group(0)
                try:
                    raw = base64.b64decode(run + "=" * (-len(run) % 4), altchars=b"-_" if ("-" in run or "_" in run) else None)
                except (binascii.Error, ValueError):
                    continue
                decoded = _printable(raw)
                if decoded:
                    found.append((kind, decoded))
        for m in _HEX_RUN.finditer(current):
            decoded = _printable(bytes.fromhex(re.sub(r"[\s:]", "", m.group(0))))
            if decoded:
                found.append(("hex", decoded))
        found = list(dict.fromkeys(found))  # the two base64 alphabets often match the same run
        if len(found) > 1:  # several runs: also read them as one message, in order
            found.append((found[0][0], " ".join(t for _, t in found)))
        for kind, decoded in found:
            if decoded not in seen and len(out) < _MAX_DECODED:
                seen.add(decoded)
                label = f"{how}+{kind}" if how else kind
                out.append((label, decoded))
                if not how:
                    queue.append((label, decoded))
    flipped = codecs.encode(text, "rot13")
    if _common_words(flipped) > max(2, 2 * _common_words(text)):
        out.append(("rot13", flipped))
    if len(text) > _LONG:
        for start in range(0, len(text) - _WINDOW + _STRIDE, _STRIDE):
            out.append(("window", text[start : start + _WINDOW]))
    return out
