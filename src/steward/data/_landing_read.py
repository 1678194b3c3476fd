"""Reading one landing file in bounded memory: decoding, CSV / JSON-lines / Parquet parsing, the per-file cap.

A file is read in blocks of about :data:`BLOCK_BYTES` (4 MiB) cut at line ends, so
memory depends on the block size, never on the file's size. Text is decoded
strictly under the source's declared encoding (default UTF-8): a line with
bytes that are not valid in it is quarantined with the byte offset ("not
valid utf-8 at byte N"), never landed with U+FFFD in its place. UTF-16/32
(declared) are transcoded block by block with an incremental decoder.

A file that cannot be landed as a whole (empty, binary, UTF-16 without a
declared encoding, an unreadable header, a parser panic, or more unreadable
rows than the source's cap allows) raises :class:`FileRejected`; the caller
quarantines it as one file-level record and goes on with the other files.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import polars as pl

if TYPE_CHECKING:
    from steward.spec import CsvOptions, SourceSpec

__all__ = [
    "BLOCK_BYTES",
    "MIN_SAMPLE",
    "Chunk",
    "CsvParser",
    "FileRejected",
    "JsonlParser",
    "RowCap",
    "read_chunks",
    "sniff",
    "text_blocks",
]

logger = logging.getLogger(__name__)

BLOCK_BYTES = 4 << 20
"""Bytes read per block: what one file costs in memory (a few times this), whatever its size."""
MIN_SAMPLE = 1000
"""Rows read before the failure-share cap applies (a small file with two bad lines is not rejected)."""
MAX_LINE_BYTES = 64 << 20
"""A "line" longer than this is not text: the file is rejected instead of buffered."""
_MAX_RECORD_LINES = 100  # a quoted field may span lines; past this, the opening line is malformed
_SNIFF_BYTES = 64 << 10
_WIDE = ("utf_16", "utf_16_le", "utf_16_be", "utf_32", "utf_32_le", "utf_32_be")


def _is_wide(encoding: str) -> bool:
    """Whether ``encoding`` is not ASCII-compatible (a newline is not the byte 0x0A): UTF-16 / UTF-32."""
    return codecs.lookup(encoding).name.replace("-", "_") in _WIDE


class FileRejected(Exception):
    """The file as a whole cannot land: it goes to quarantine as one record.

    Attributes:
        reason: Why, for a person (names the fix when there is one).
        rows_read: Records read before the decision.
        rows_failed: Of those, records that could not be read.
        first_reasons: The first few row-level reasons.
    """

    def __init__(self, reason: str, *, rows_read: int = 0, rows_failed: int = 0, first_reasons: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rows_read = rows_read
        self.rows_failed = rows_failed
        self.first_reasons = list(first_reasons or [])


@dataclass(frozen=True)
class RowCap:
    """How many unreadable rows one file may send to quarantine before the whole file is rejected."""

    max_rows: int
    max_share: float
    min_sample: int = MIN_SAMPLE


@dataclass
class Chunk:
    """Part of a file: data columns (text, or typed for Parquet) with ``_row``, and failures ``(row, reason, raw)``."""

    rows: pl.DataFrame
    bad: list[tuple[int, str, str]] = field(default_factory=list)


# -- decoding ----------------------------------------------------------------------
def _split_lines(text: str) -> list[str]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _looks_utf16(head: bytes) -> bool:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    # ASCII text in UTF-16: every other byte is NUL
    sample = head[:4096]
    return len(sample) >= 4 and (sample[1::2].count(0) > 0.8 * (len(sample) // 2) or sample[0::2].count(0) > 0.8 * (len(sample) // 2))


def sniff(head: bytes, encoding: str, source: str) -> None:
    """Reject a file whose first bytes show it cannot be text in ``encoding``.

    Raises:
        FileRejected: empty, UTF-16 without a declared UTF-16 encoding, or binary (NUL bytes).
    """
    if not head:
        raise FileRejected("the file is empty (0 bytes)")
    if _is_wide(encoding):
        return
    if _looks_utf16(head):
        raise FileRejected(
            f"the file looks like UTF-16 (byte-order mark or NUL bytes) but source {source!r} reads it as {encoding}; "
            f"declare 'encoding: utf-16' for source {source!r} in steward.yaml"
        )
    nul = head.find(b"\x00")
    if nul >= 0:
        raise FileRejected(f"binary file: NUL byte at byte {nul}, not {encoding} text")


def _byte_blocks(fh: BinaryIO, encoding: str) -> Iterator[tuple[list[str], dict[int, str]]]:
    """Blocks of lines of an ASCII-compatible encoding, with the undecodable lines' reasons by index."""
    codec = "utf-8" if codecs.lookup(encoding).name == "utf-8" else encoding
    pending = b""
    offset = 0  # file offset of pending[0]
    first = True
    while True:
        data = fh.read(BLOCK_BYTES)
        eof = not data
        buf = pending + data
        if first and buf.startswith(codecs.BOM_UTF8) and codec == "utf-8":
            buf, offset = buf[3:], 3
        first = False
        if eof and not buf:
            return
        cut = len(buf) if eof else buf.rfind(b"\n") + 1
        if cut == 0:
            if len(buf) > MAX_LINE_BYTES:
                raise FileRejected(f"no line end in the first {MAX_LINE_BYTES >> 20} MiB after byte {offset}: not line-oriented text")
            pending = buf
            continue
        block, pending = buf[:cut], buf[cut:]
        try:
            yield _split_lines(block.decode(codec)), {}
        except UnicodeDecodeError:
            # the slow path, only for a block with bad bytes: find them line by line
            lines: list[str] = []
            bad: dict[int, str] = {}
            pos = 0
            parts = block.split(b"\n")
            if parts and parts[-1] == b"":
                parts.pop()
            for raw in parts:
                try:
                    text = raw.decode(codec)
                except UnicodeDecodeError as exc:
                    bad[len(lines)] = f"not valid {encoding} at byte {offset + pos + exc.start}"
                    text = raw.decode(codec, errors="backslashreplace")  # the raw bytes stay visible, as \xNN
                lines.append(text.rstrip("\r"))
                pos += len(raw) + 1
            yield lines, bad
        offset += cut
        if eof:
            return


def _wide_blocks(fh: BinaryIO, encoding: str) -> Iterator[tuple[list[str], dict[int, str]]]:
    """Blocks of lines of a UTF-16/32 file, transcoded incrementally (one bad byte rejects the file: no resync)."""
    dec = codecs.getincrementaldecoder(encoding)(errors="strict")
    carry = ""
    offset = 0
    while True:
        data = fh.read(BLOCK_BYTES)
        eof = not data
        try:
            text = carry + dec.decode(data, final=eof)
        except UnicodeDecodeError as exc:
            raise FileRejected(f"not valid {encoding} at byte {offset + exc.start}") from None
        offset += len(data)
        cut = len(text) if eof else text.rfind("\n") + 1
        if cut == 0 and len(text) > MAX_LINE_BYTES:
            raise FileRejected(f"no line end in the first {MAX_LINE_BYTES >> 20} MiB: not line-oriented text")
        carry = text[cut:]
        if cut:
            yield _split_lines(text[:cut]), {}
        if eof:
            return


def text_blocks(fh: BinaryIO, encoding: str) -> Iterator[tuple[list[str], dict[int, str]]]:
    """Blocks of decoded lines, each with ``{index in block: reason}`` for lines that are not valid ``encoding``."""
    if _is_wide(encoding):
        return _wide_blocks(fh, encoding)
    return _byte_blocks(fh, encoding)


# -- parsing -----------------------------------------------------------------------
def _parse_one(record: str, delimiter: str) -> list[str]:
    rows = list(csv.reader(io.StringIO(record, newline=""), delimiter=delimiter, strict=True))
    if len(rows) != 1:
        raise csv.Error(f"expected one record, found {len(rows)}")
    return rows[0]


def _frame(names: list[str], cols: dict[str, list[Any]], rownums: list[int]) -> pl.DataFrame:
    rows = pl.DataFrame({c: pl.Series(c, cols[c], dtype=pl.String) for c in names}) if names else pl.DataFrame(height=len(rownums))
    return rows.with_columns(pl.Series("_row", rownums, dtype=pl.Int64))


class CsvParser:
    """A tolerant CSV parser fed block by block (a quoted record may span blocks).

    Row numbers are 1-based data line numbers (the header is line 0); the file
    line is ``row + 1`` with a header.
    """

    def __init__(self, opts: CsvOptions, names_if_no_header: list[str]) -> None:
        self.opts = opts
        self.offset = 1 if opts.header else 0
        self.names: list[str] | None = None if opts.header else list(names_if_no_header)
        self.nulls = set(opts.null_values)
        self.base = 0  # file line index of the first carried line
        self.carry: list[str] = []
        self.carry_bad: dict[int, str] = {}

    def _header(self, line: str) -> list[str]:
        try:
            names = [n.strip() for n in _parse_one(line, self.opts.delimiter)]
        except csv.Error as exc:
            raise FileRejected(f"the header line cannot be parsed: {exc}; fix the first line of the file") from None
        if any(not n for n in names) or len(set(names)) != len(names):
            raise FileRejected(f"the header has empty or repeated column names: {names}; give every column a unique name")
        return names

    def feed(self, new_lines: list[str], new_bad: dict[int, str], *, final: bool) -> Chunk:
        """Parse the next lines; an unfinished quoted record at the end waits for the next block unless ``final``."""
        lines = self.carry + new_lines
        bad = {**self.carry_bad, **{len(self.carry) + k: v for k, v in new_bad.items()}}
        d = self.opts.delimiter
        i = 0
        if self.names is None:
            if not lines:
                if final:
                    raise FileRejected("the file is empty (no header line); a CSV source with 'header: true' needs one")
                return Chunk(_frame([], {}, []))
            if 0 in bad:
                raise FileRejected(f"the header line is {bad[0]}")
            self.names = self._header(lines[0])
            i = 1
        names = self.names
        n = len(names)
        cols: dict[str, list[Any]] = {c: [] for c in names}
        rownums: list[int] = []
        failures: list[tuple[int, str, str]] = []
        quoted = any('"' in ln for ln in lines)
        carry_from: int | None = None
        while i < len(lines):
            line = lines[i]
            g = self.base + i
            row = g + 1 - self.offset
            if i in bad:
                failures.append((row, f"line {g + 1}: {bad[i]}", line))
                i += 1
                continue
            if not line.strip():
                i += 1
                continue
            if not quoted:
                # fast path: without quotes a record is one line split on the delimiter
                fields = line.split(d)
                if len(fields) == n:
                    rownums.append(row)
                    for c, v in zip(names, fields, strict=True):
                        cols[c].append(None if v in self.nulls else v)
                else:
                    failures.append((row, f"line {g + 1}: expected {n} fields, found {len(fields)}", line))
                i += 1
                continue
            record, j = line, i
            while record.count('"') % 2 == 1 and j + 1 < len(lines) and j - i < _MAX_RECORD_LINES and j + 1 not in bad:
                j += 1
                record += "\n" + lines[j]
            if record.count('"') % 2 == 1 and j + 1 == len(lines) and j - i < _MAX_RECORD_LINES and not final:
                carry_from = i  # the record may go on in the next block
                break
            try:
                if record.count('"') % 2 == 1:
                    raise csv.Error("unterminated quoted field")
                fields = _parse_one(record, d)
            except csv.Error as exc:
                reason = str(exc)
                if j > i:
                    # the join across lines did not help: only the opening line is broken
                    try:
                        _parse_one(line, d)
                        reason = "unterminated quoted field"
                    except csv.Error as exc2:
                        reason = str(exc2)
                failures.append((row, f"line {g + 1}: broken quoting ({reason})", line))
                i += 1
                continue
            if len(fields) != n:
                failures.append((row, f"line {g + 1}: expected {n} fields, found {len(fields)}", record))
            else:
                rownums.append(row)
                for c, v in zip(names, fields, strict=True):
                    cols[c].append(None if v in self.nulls else v)
            i = j + 1
        if carry_from is None:
            self.base += len(lines)
            self.carry, self.carry_bad = [], {}
        else:
            self.base += carry_from
            self.carry = lines[carry_from:]
            self.carry_bad = {k - carry_from: v for k, v in bad.items() if k >= carry_from}
        return Chunk(_frame(names, cols, rownums), failures)


def _jsonl_value(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False)


class JsonlParser:
    """JSON lines, block by block: each line one object; values land as text."""

    def __init__(self) -> None:
        self.base = 0

    def feed(self, lines: list[str], bad: dict[int, str], *, final: bool) -> Chunk:
        """Parse the next lines."""
        records: list[tuple[int, dict[str, Any]]] = []
        failures: list[tuple[int, str, str]] = []
        names: dict[str, None] = {}
        for i, line in enumerate(lines):
            g = self.base + i + 1
            if i in bad:
                failures.append((g, f"line {g}: {bad[i]}", line))
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                failures.append((g, f"line {g}: not valid JSON ({exc})", line))
                continue
            if not isinstance(obj, dict):
                failures.append((g, f"line {g}: a JSON line must be an object, got {type(obj).__name__}", line))
                continue
            for k in obj:
                names.setdefault(str(k), None)
            records.append((g, obj))
        self.base += len(lines)
        cols = {c: [_jsonl_value(r.get(c)) for _, r in records] for c in names}
        return Chunk(_frame(list(names), cols, [r for r, _ in records]), failures)


def _parquet_chunks(path: Path, data: bytes | None) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(io.BytesIO(data) if data is not None else path)
    except Exception as exc:  # pyarrow raises several error types for a corrupt file
        raise FileRejected(f"not a readable Parquet file: {exc}; re-export the file or remove it from the landing directory") from None
    start = 0
    for batch in pf.iter_batches(batch_size=256_000):
        df = pl.from_arrow(batch)
        assert isinstance(df, pl.DataFrame)
        yield Chunk(df.with_columns(pl.int_range(start, start + df.height, dtype=pl.Int64).alias("_row")))
        start += df.height


def _text_chunks(path: Path, spec: SourceSpec, source: str, header_names: list[str], data: bytes | None) -> Iterator[Chunk]:
    with io.BytesIO(data) if data is not None else path.open("rb") as fh:
        sniff(fh.read(_SNIFF_BYTES), spec.encoding, source)
        fh.seek(0)
        parser: CsvParser | JsonlParser = CsvParser(spec.csv, header_names) if spec.format == "csv" else JsonlParser()
        blocks = text_blocks(fh, spec.encoding)
        block = next(blocks, None)
        if block is None:
            yield parser.feed([], {}, final=True)
            return
        for nxt in blocks:
            yield parser.feed(*block, final=False)
            block = nxt
        yield parser.feed(*block, final=True)


def read_chunks(
    path: Path, spec: SourceSpec, *, source: str, header_names: list[str], cap: RowCap, data: bytes | None = None
) -> Iterator[Chunk]:
    """Chunks of a landing file, each bounded by the block size; enforces the per-file cap as it goes.

    Args:
        path: The file.
        spec: The source spec (format, encoding, CSV options).
        source: Source name (for messages).
        header_names: Column names for a CSV without a header line.
        cap: The per-file cap on unreadable rows.
        data: The file's bytes when already in memory (small files, tests); default: stream ``path``.

    Raises:
        FileRejected: the file cannot land as a whole (see the module docstring).
    """
    rows_read = failed = 0
    first: list[str] = []
    try:
        if spec.format == "parquet":
            if (len(data) if data is not None else path.stat().st_size) == 0:
                raise FileRejected("the file is empty (0 bytes)")
            chunks = _parquet_chunks(path, data)
        else:
            chunks = _text_chunks(path, spec, source, header_names, data)
        for chunk in chunks:
            rows_read += chunk.rows.height + len(chunk.bad)
            failed += len(chunk.bad)
            first += [b[1] for b in chunk.bad[: max(0, 3 - len(first))]]
            over_rows = failed > cap.max_rows
            over_share = rows_read >= cap.min_sample and failed > cap.max_share * rows_read
            if over_rows or over_share:
                why = f"more than {cap.max_rows:,} unreadable rows" if over_rows else f"more than {cap.max_share:.0%} of rows unreadable"
                raise FileRejected(
                    f"{why} ({failed:,} of the first {rows_read:,}): the whole file is quarantined "
                    "(raise the source's max_bad_rows / max_bad_share to land its good rows)",
                    rows_read=rows_read,
                    rows_failed=failed,
                    first_reasons=first,
                )
            yield chunk
    except FileRejected as exc:
        exc.rows_read, exc.rows_failed = exc.rows_read or rows_read, exc.rows_failed or failed
        exc.first_reasons = exc.first_reasons or first
        raise
    except OSError as exc:
        raise FileRejected(f"cannot read: {exc}", rows_read=rows_read, rows_failed=failed, first_reasons=first) from None
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # a parser panic (pyo3's PanicException is a BaseException) must not stop the batch
        logger.warning("%s: reading failed: %r", path, exc)
        raise FileRejected(f"the reader failed: {type(exc).__name__}: {exc}", rows_read=rows_read, rows_failed=failed) from None
