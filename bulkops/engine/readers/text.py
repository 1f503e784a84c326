"""Text files (CSV, TSV, JSON) -> a decoded stream, and CSV/TSV -> records.

Encoding, in this order:

1. a byte-order mark: UTF-8, UTF-16 (LE/BE) or UTF-32 (LE/BE);
2. no mark but the NUL pattern of UTF-16 text in the first bytes: UTF-16;
3. UTF-8, when every byte of the file is valid UTF-8;
4. otherwise ``BULKOPS["FALLBACK_ENCODING"]`` (cp1252 by default: what Excel
   on Windows writes as "CSV" in western Europe and the Americas).

A file that is neither is refused. The whole file is checked in blocks before
the first row is read, because a single stray byte at row 90,000 would
otherwise fail an import half-way; it costs one fast pass, not memory.

Records are read through ``csv`` on that stream with a bound on every row's
characters, so a 50 MB line or a quote left open fails as "Row N is longer
than ..." after reading at most the bound (and a block), never the whole line.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from itertools import chain
from typing import IO

from bulkops.conf import bulkops_settings
from bulkops.exceptions import UnreadableFile

from .files import OLE2_MAGIC, ZIP_MAGIC, NonClosingReader, read_magic

SCAN_BLOCK = 256 * 1024

# UTF-32 marks first: the UTF-32 LE mark begins with the UTF-16 LE one.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

SNIFFED_DELIMITERS = (",", ";", "\t")


def _first_decode_error(fileobj: IO[bytes], encoding: str) -> UnicodeDecodeError | None:
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    fileobj.seek(0)
    try:
        while True:
            block = fileobj.read(SCAN_BLOCK)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                # Make the position absolute, for the message.
                exc.start += offset - pending
                return exc
            if not block:
                return None
            offset += len(block)
    finally:
        fileobj.seek(0)


def detect_encoding(fileobj: IO[bytes], *, kind: str = "CSV") -> str:
    """The encoding to read ``fileobj`` with (see the module docstring)."""
    head = read_magic(fileobj, 8)
    if head.startswith(ZIP_MAGIC) or head.startswith(OLE2_MAGIC):
        raise UnreadableFile(
            f"This file is a spreadsheet workbook, not {kind} text; "
            "give it its real extension (.xlsx, .ods or .xls) and upload it again.",
            code="wrong_format",
        )
    encoding = _encoding_from_start(head)
    error = _first_decode_error(fileobj, encoding)
    if error is None:
        return encoding
    if encoding == "utf-8":
        fallback = bulkops_settings.FALLBACK_ENCODING
        error = _first_decode_error(fileobj, fallback)
        if error is None:
            return fallback
        raise UnreadableFile(
            f"The file is neither UTF-8 nor {fallback} text "
            f"(byte 0x{_bad_byte(fileobj, error.start)} at position {error.start}); "
            "save it as UTF-8 and upload it again.",
            code="bad_encoding",
        )
    label = "UTF-8" if encoding == "utf-8-sig" else encoding.upper()
    raise UnreadableFile(
        f"The file is not valid {label} text (at byte {error.start}); "
        "save it again as UTF-8 and upload it.",
        code="bad_encoding",
    )


def _encoding_from_start(head: bytes) -> str:
    for bom, encoding in BOMS:
        if head.startswith(bom):
            return encoding
    # No mark, but ASCII text with a NUL after (or before) every character.
    if len(head) >= 4 and head[1] == head[3] == 0 and head[0] and head[2]:
        return "utf-16-le"
    if len(head) >= 4 and head[0] == head[2] == 0 and head[1] and head[3]:
        return "utf-16-be"
    return "utf-8"


def _bad_byte(fileobj: IO[bytes], position: int) -> str:
    fileobj.seek(position)
    byte = fileobj.read(1) or b""
    fileobj.seek(0)
    return bytes(byte).hex()


def open_text(fileobj: IO[bytes], encoding: str) -> io.TextIOWrapper:
    """A text stream over ``fileobj`` that leaves ``fileobj`` open when closed.

    ``newline=""`` hands line endings to ``csv`` untouched, as its docs require,
    so a quoted cell may hold a newline.
    """
    fileobj.seek(0)
    buffered = io.BufferedReader(NonClosingReader(fileobj), buffer_size=64 * 1024)
    return io.TextIOWrapper(buffered, encoding=encoding, newline="")


class _RowTooLong(Exception):
    pass


#: Characters read at once; each block is split into lines in C.
READ_BLOCK = 64 * 1024


class BoundedLines:
    """Lines of a text stream for ``csv.reader``, at most ``limit`` characters
    per record.

    The stream is read in blocks and each block split into lines by
    ``io.StringIO``, which ends lines where ``newline=""`` does (``\\r``, ``\\n``,
    ``\\r\\n``): no Python code runs per line. The line a block cuts is completed
    by a ``readline`` bounded by the limit, so one huge line is never read
    further than its first ``limit + 1`` characters. A record's length is its
    end's ``position()`` less ``start`` (the end of the record before, which the
    reader of the records sets); a record still open when a block is used up is
    checked there, so an open quote is read at most a block past the limit.
    """

    def __init__(self, text: io.TextIOBase, limit: int) -> None:
        self._text = text
        self._limit = limit
        self._first: str | None = None
        self._base = 0  # where the block being read starts in the stream
        self._block = io.StringIO()
        self.start = 0  # where the record being read starts

    def peek(self) -> str:
        """The first line, kept to be returned again by the iteration."""
        if self._first is None:
            line = self._text.readline(self._limit + 1)
            if len(line) > self._limit:
                raise _RowTooLong
            self._first = line
        return self._first

    def position(self) -> int:
        """Characters read up to the end of the line last returned."""
        return self._base + self._block.tell()

    def __iter__(self) -> Iterator[str]:
        return chain.from_iterable(self._blocks())

    def _blocks(self) -> Iterator[Iterator[str]]:
        text, limit = self._text, self._limit
        first = self.peek()
        base = 0
        while True:
            if base - self.start > limit:  # a record left open by the blocks before
                yield _too_long_line()
                return
            block = text.read(READ_BLOCK)
            if first:
                block, first = first + block, ""
            if not block:
                return
            too_long = False
            if block[-1] != "\n":
                # The block may cut a line, or a "\r\n" after its "\r": the line is
                # completed (readline then gives the "\n", or nothing more, or the next
                # whole line, which belongs here as well), within the bound.
                cut = max(block.rfind("\n"), block.rfind("\r")) + 1
                room = limit + 1 - (len(block) - cut)
                rest = text.readline(room) if room > 0 else ""
                if room <= 0 or len(rest) == room:
                    block, too_long = block[:cut], True
                else:
                    block += rest
            self._base, self._block = base, io.StringIO(block, newline="")
            yield self._block
            if too_long:
                yield _too_long_line()
                return
            base += len(block)


def _too_long_line() -> Iterator[str]:
    raise _RowTooLong
    yield  # a generator: it raises when the reader asks it for the line


def sniff_delimiter(first_line: str) -> str:
    """``,`` unless the header line holds more ``;`` or tabs (Excel in many
    European locales writes ``;``)."""
    counts = {d: first_line.count(d) for d in SNIFFED_DELIMITERS}
    best = max(SNIFFED_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def read_records(
    fileobj: IO[bytes], *, delimiter: str | None, kind: str = "CSV"
) -> tuple[Iterator[tuple[int, list[str]]], io.TextIOWrapper]:
    """``(row number, cells)`` for every record of a CSV/TSV file, blank ones
    included (as empty lists) so numbering matches a spreadsheet program's.

    ``delimiter=None`` sniffs it from the first line. Returns the records and
    the text stream to close.
    """
    limit = bulkops_settings.MAX_CELL_CHARS
    # The csv module's own bound is process-wide; only ever raise it, and only
    # to our bound. The per-record bound below is what protects memory.
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)
    text = open_text(fileobj, detect_encoding(fileobj, kind=kind))
    lines = BoundedLines(text, limit)
    try:
        first = lines.peek()
    except _RowTooLong:
        text.close()
        raise _too_long(1, limit) from None
    except UnicodeDecodeError as exc:
        text.close()
        raise _undecodable(exc) from None
    if delimiter is None:
        delimiter = sniff_delimiter(first)
    return _records(lines, delimiter, limit), text


def _records(lines: BoundedLines, delimiter: str, limit: int) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(lines, delimiter=delimiter)
    position = lines.position
    row = 0
    while True:
        row += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except _RowTooLong:
            raise _too_long(row, limit) from None
        except UnicodeDecodeError as exc:
            raise _undecodable(exc) from None
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise _too_long(row, limit) from None
            raise UnreadableFile(
                f"Row {row} cannot be read as CSV ({exc}); check its quotes.",
                code="malformed_csv",
            ) from None
        end = position()
        if end - lines.start > limit:
            raise _too_long(row, limit)
        lines.start = end
        yield row, cells


def _too_long(row: int, limit: int) -> UnreadableFile:
    return UnreadableFile(
        f"Row {row} is longer than {limit} characters; check for a quote that is never "
        "closed, or split the long cells.",
        code="row_too_long",
        row=row,
        limit=limit,
    )


def _undecodable(exc: UnicodeDecodeError) -> UnreadableFile:
    return UnreadableFile(
        f"The file is not valid {exc.encoding.upper()} text ({exc.reason}); "
        "save it as UTF-8 and upload it again.",
        code="bad_encoding",
    )
