"""Corpus loaders: documents made of sections, from real text no one on the team wrote.

* The Python standard library, read through :mod:`inspect`: one document per
  module (``stdlib:json``), one section per public function, class and method
  (``json.dumps``, ``json.JSONDecoder.decode``) holding its signature and docstring.
* Debian's ``python3.11-doc`` HTML (``/usr/share/doc/python3.11/html``) when it is
  installed: one document per page, one section per heading.
* A directory of Markdown, HTML and text files (Steward's own ``docs/``).

Document and section ids are derived from names, never from positions, so they
are stable across ingests; each document carries a content hash so re-ingesting
an unchanged document does nothing.
"""

from __future__ import annotations

import hashlib
import html
import importlib
import inspect
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

__all__ = [
    "DEBIAN_HTML_DIRS",
    "STDLIB_MODULES",
    "Document",
    "Section",
    "html_documents",
    "load_path",
    "markdown_sections",
    "parse_html",
    "stdlib_documents",
    "stdlib_html_dir",
]

logger = logging.getLogger(__name__)

#: The broad, fixed module list behind ``modules: all``: the documented, importable,
#: side-effect-free part of the standard library (no GUI, no ``this``/``antigravity``).
STDLIB_MODULES: tuple[str, ...] = (
    "abc", "argparse", "array", "ast", "asyncio", "base64", "bisect", "binascii", "builtins", "bz2",
    "calendar", "cmath", "codecs", "collections", "collections.abc", "colorsys", "concurrent.futures",
    "configparser", "contextlib", "contextvars", "copy", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "dis", "email.message", "email.utils", "enum", "errno", "filecmp", "fnmatch", "fractions",
    "ftplib", "functools", "gc", "getpass", "gettext", "glob", "graphlib", "gzip", "hashlib", "heapq",
    "hmac", "html", "html.parser", "http.client", "http.cookies", "http.server", "imaplib", "importlib",
    "importlib.metadata", "importlib.resources", "inspect", "io", "ipaddress", "itertools", "json",
    "keyword", "linecache", "locale", "logging", "logging.handlers", "lzma", "math", "mimetypes",
    "multiprocessing", "numbers", "operator", "os", "os.path", "pathlib", "pickle", "pkgutil", "platform",
    "plistlib", "pprint", "queue", "quopri", "random", "re", "reprlib", "sched", "secrets", "select",
    "selectors", "shelve", "shlex", "shutil", "signal", "smtplib", "socket", "sqlite3", "ssl", "stat",
    "statistics", "string", "struct", "subprocess", "sys", "sysconfig", "tarfile", "tempfile", "textwrap",
    "threading", "time", "timeit", "tokenize", "tomllib", "trace", "traceback", "types", "typing",
    "unicodedata", "unittest", "unittest.mock", "urllib.parse", "urllib.request", "uuid", "warnings",
    "weakref", "webbrowser", "wsgiref.simple_server", "xml.etree.ElementTree", "xml.dom.minidom",
    "zipfile", "zlib", "zoneinfo",
)  # fmt: skip

DEBIAN_HTML_DIRS = ("/usr/share/doc/python3.11/html", "/usr/share/doc/python3-doc/html", "/usr/share/doc/python3.11-doc/html")


@dataclass(frozen=True)
class Section:
    """A titled part of a document; ``section_id`` is stable across ingests."""

    section_id: str
    title: str
    text: str


@dataclass
class Document:
    """A source document: an id, a title, ordered sections, and its content hash."""

    doc_id: str
    title: str
    sections: list[Section]
    source: str = ""
    doc_hash: str = field(default="")

    def __post_init__(self) -> None:
        if not self.doc_hash:
            h = hashlib.sha256(self.title.encode())
            for s in self.sections:
                h.update(b"\x00" + s.section_id.encode() + b"\x00" + s.title.encode() + b"\x00" + s.text.encode())
            self.doc_hash = h.hexdigest()


# --- standard library -------------------------------------------------------------------


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)" if callable(obj) else ""


def _owned(obj: Any, module: str) -> bool:
    owner = getattr(obj, "__module__", None)
    # C accelerators report e.g. "_json" for json's scanner: accept the private twin.
    return owner is not None and (owner == module or owner.lstrip("_") == module.split(".")[-1] or owner == "_" + module)


def _public_names(mod: Any) -> tuple[list[str], bool]:
    """Public names, and whether the module declared them (``__all__``) explicitly."""
    names = getattr(mod, "__all__", None)
    if isinstance(names, (list, tuple)):
        return sorted({str(n) for n in names}), True
    return sorted(n for n in vars(mod) if not n.startswith("_")), False


def _module_sections(name: str, mod: Any) -> list[Section]:
    sections: list[Section] = []
    doc = inspect.getdoc(mod)
    if doc:
        sections.append(Section(name, f"module {name}", doc))
    names, explicit = _public_names(mod)
    for attr in names:
        obj = getattr(mod, attr, None)
        if obj is None or inspect.ismodule(obj):
            continue
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        # Names in __all__ are the module's documented API even when defined in a submodule
        # (json.JSONDecoder lives in json.decoder); otherwise skip re-exported imports.
        if not explicit and not _owned(obj, name) and name != "builtins":
            continue
        qual = f"{name}.{attr}"
        # A class without its own docstring would inherit its base's ("Common base class for
        # all non-exit exceptions."): that says nothing about this class, so skip it.
        own = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
        odoc = inspect.cleandoc(own) if isinstance(own, str) else None
        if odoc:
            kind = "class" if inspect.isclass(obj) else "function"
            sections.append(Section(qual, f"{kind} {qual}{_signature(obj)}", odoc))
        if inspect.isclass(obj):
            for mname in sorted(vars(obj)):
                if mname.startswith("_") and mname != "__init__":
                    continue
                member = vars(obj)[mname]
                func = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                if not (inspect.isroutine(func) or isinstance(member, property)):
                    continue
                mdoc = inspect.getdoc(member) if isinstance(member, property) else func.__doc__ and inspect.cleandoc(func.__doc__)
                if not mdoc or (mname == "__init__" and mdoc.startswith("Initialize self")):
                    continue
                sig = "" if isinstance(member, property) else _signature(func)
                mqual = f"{qual}.{mname}"
                sections.append(Section(mqual, f"{'property' if sig == '' else 'method'} {mqual}{sig}", mdoc))
    return sections


def stdlib_documents(modules: list[str] | tuple[str, ...] | None = None) -> Iterator[Document]:
    """Yield one document per standard-library module, from its live docstrings.

    Args:
        modules: Module names; default :data:`STDLIB_MODULES`. Modules that fail to
            import on this platform are skipped (logged), so the list is portable.
    """
    for name in modules or STDLIB_MODULES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = importlib.import_module(name)
        except Exception as exc:  # a platform without the module: skip, don't fail the ingest
            logger.info("skipping stdlib module %s: %s", name, exc)
            continue
        sections = _module_sections(name, mod)
        if not sections:
            continue
        first = (inspect.getdoc(mod) or name).strip().splitlines()[0]
        yield Document(f"stdlib:{name}", f"{name}: {first}"[:200], sections, source=f"python-stdlib:{name}")


def stdlib_html_dir() -> Path | None:
    """Debian's python3.11-doc HTML directory, when the package is installed."""
    for d in DEBIAN_HTML_DIRS:
        p = Path(d)
        if (p / "library").is_dir():
            return p
    return None


# --- HTML --------------------------------------------------------------------------------

_HEADINGS = {"h1", "h2", "h3", "h4"}
_SKIP = {"script", "style", "nav", "head", "footer"}
_BLOCK = {"p", "div", "li", "pre", "dt", "dd", "tr", "br", "section", "table", "ul", "ol", "dl", "blockquote"}


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:80] or "section"


class _SectionParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[tuple[str, str, list[str]]] = [("top", "", [])]
        self.title = ""
        self._skip = 0
        self._in_title = False
        self._heading: list[str] | None = None
        self._heading_id: str | None = None
        self._last_id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id")
        if ident:
            self._last_id = ident
        if tag in _SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in _HEADINGS and not self._skip:
            self._heading = []
            self._heading_id = ident or self._last_id
        elif tag in _BLOCK and self._heading is None:
            self.sections[-1][2].append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in _HEADINGS and self._heading is not None:
            text = re.sub(r"\s+", " ", "".join(self._heading)).strip().rstrip("¶").strip()
            sid = self._heading_id or _slug(text)
            self.sections.append((sid, text, []))
            self._heading = None
            self._heading_id = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif self._skip:
            return
        elif self._heading is not None:
            self._heading.append(data)
        else:
            self.sections[-1][2].append(data)


def _clean(text: str) -> str:
    lines = [re.sub(r"[ \t]+", " ", ln).strip() for ln in text.splitlines()]
    out = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return out.replace("¶", "")


def parse_html(text: str) -> tuple[str, list[Section]]:
    """Split an HTML page into (title, sections at h1-h4 headings); ids from anchors or slugs."""
    parser = _SectionParser()
    parser.feed(text)
    parser.close()
    sections: list[Section] = []
    seen: dict[str, int] = {}
    for sid, title, parts in parser.sections:
        body = _clean(html.unescape("".join(parts)))
        if not body:
            continue
        n = seen.get(sid, 0)
        seen[sid] = n + 1
        sections.append(Section(sid if n == 0 else f"{sid}-{n}", title or parser.title.strip(), body))
    return parser.title.strip(), sections


def html_documents(root: Path, prefix: str = "pydoc-html") -> Iterator[Document]:
    """One document per ``*.html`` page under ``root`` (sorted, so the order is stable)."""
    for path in sorted(root.rglob("*.html")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("_static/", "genindex", "search", "py-modindex")):
            continue
        title, sections = parse_html(path.read_text(encoding="utf-8", errors="replace"))
        if sections:
            yield Document(f"{prefix}:{rel}", title or rel, sections, source=str(path))


# --- Markdown and text -------------------------------------------------------------------

_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def markdown_sections(text: str) -> tuple[str, list[Section]]:
    """Split Markdown at ATX headings (ignoring ``#`` inside code fences).

    Section ids are the slugged heading path (``install/with-pip``), stable while headings are.
    """
    title = ""
    path: list[str] = []
    current_id, current_title = "top", ""
    buf: list[str] = []
    sections: list[Section] = []
    seen: dict[str, int] = {}
    fence = False

    def flush() -> None:
        body = "\n".join(buf).strip()
        if body:
            n = seen.get(current_id, 0)
            seen[current_id] = n + 1
            sections.append(Section(current_id if n == 0 else f"{current_id}-{n}", current_title or title, body))

    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        m = None if fence else _ATX.match(line)
        if m:
            flush()
            level, heading = len(m.group(1)), m.group(2)
            if level == 1 and not title:
                title = heading
            path = [*path[: level - 1], _slug(heading)]
            current_id, current_title, buf = "/".join(path), heading, []
        else:
            buf.append(line)
    flush()
    return title, sections


def load_path(root: Path, prefix: str = "docs") -> Iterator[Document]:
    """Documents from a file or directory: ``.md``, ``.markdown``, ``.html``, ``.htm``, ``.txt``, ``.rst``."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    base = root.parent if root.is_file() else root
    for path in files:
        suffix = path.suffix.lower()
        rel = path.relative_to(base).as_posix()
        if suffix not in (".md", ".markdown", ".html", ".htm", ".txt", ".rst"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if suffix in (".md", ".markdown"):
            title, sections = markdown_sections(text)
        elif suffix in (".html", ".htm"):
            title, sections = parse_html(text)
        else:
            paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
            title = paras[0].splitlines()[0][:120] if paras else rel
            sections = [Section(f"p{i}", title, p) for i, p in enumerate(paras)]
        if sections:
            yield Document(f"{prefix}:{rel}", title or rel, sections, source=str(path))
