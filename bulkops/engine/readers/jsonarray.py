"""JSON files: a top-level array of objects, read one item at a time.

``json.load`` would hold the whole document, and its objects, in memory. Here
the text is read in blocks and each item is decoded on its own with
``JSONDecoder.raw_decode``, so memory is bounded by the largest item, which is
itself bounded by ``MAX_CELL_CHARS``.

Each object's keys go through the same header matching as a spreadsheet's
header row, item by item (items need not share keys); ``_ref`` becomes the
row's ``ref``. Values keep their JSON types (``null`` stays ``None``): JSON says
what it means, so nothing is converted. ``SourceRow.row`` is the item's 1-based
position in the array.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from rest_framework.settings import api_settings

from bulkops.conf import bulkops_settings
from bulkops.engine.rows import SourceRow
from bulkops.exceptions import UnreadableFile

from .headers import FieldIndex
from .source import row_limit_exceeded

BLOCK_CHARS = 64 * 1024
REF_KEY = "_ref"

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
# How close to the end of the text read so far a decode error must be to mean
# "the item goes on in the next block" rather than "the item is malformed".
_TRUNCATION_MARGIN = 16

_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}


class JsonArrayReader:
    """The items of a JSON array, decoded one by one from a text stream."""

    def __init__(self, text: Any, *, max_chars: int) -> None:
        self._text = text
        self._max_chars = max_chars
        self._buf = ""
        self._pos = 0
        self._eof = False
        # Where ``_buf[0]`` sits in the file, for line/column in messages.
        self._line = 1
        self._line_start = 0
        self._offset = 0

    # Buffer handling -----------------------------------------------------

    def _read_more(self) -> bool:
        consumed = self._buf[: self._pos]
        newlines = consumed.count("\n")
        if newlines:
            self._line += newlines
            self._line_start = self._offset + consumed.rindex("\n") + 1
        self._offset += self._pos
        self._buf = self._buf[self._pos :]
        self._pos = 0
        if self._eof:
            return False
        # Read at least as much as is buffered: one big item costs a few
        # doubling reads and decode attempts, not one per block.
        block = self._text.read(max(BLOCK_CHARS, len(self._buf)))
        if not block:
            self._eof = True
            return False
        self._buf += block
        return True

    def _next_char(self) -> str | None:
        """The next non-blank character (not consumed), ``None`` at the end."""
        while True:
            self._pos = _WHITESPACE.match(self._buf, self._pos).end()  # type: ignore[union-attr]
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._read_more():
                return None

    def _where(self, pos: int) -> str:
        before = self._buf[:pos]
        newlines = before.count("\n")
        line = self._line + newlines
        if newlines:
            column = pos - before.rindex("\n")
        else:
            column = self._offset + pos - self._line_start + 1
        return f"line {line}, column {column}"

    def _malformed(self, pos: int, problem: str) -> UnreadableFile:
        return UnreadableFile(
            f"The JSON is malformed at {self._where(pos)}: {problem}; "
            "fix it or export the file again.",
            code="malformed_json",
        )

    # Structure -----------------------------------------------------------

    def start(self) -> None:
        """Consume the opening ``[``; refuse anything else."""
        char = self._next_char()
        if char is None:
            raise UnreadableFile(
                "The file is empty; it must hold a JSON array of objects.", code="empty_file"
            )
        if char != "[":
            raise UnreadableFile(
                f'The JSON file must hold an array of objects, like [{{"sku": "A-1"}}], '
                f"but it starts with {char!r}.",
                code="not_an_array",
            )
        self._pos += 1

    def items(self) -> Iterator[tuple[int, Any]]:
        """``(position, value)`` for each item, position counting from 1."""
        if self._next_char() == "]":
            self._pos += 1
            self._expect_end()
            return
        position = 0
        while True:
            position += 1
            if self._next_char() is None:
                raise self._malformed(self._pos, "the array is never closed with ]")
            yield position, self._decode_item(position)
            char = self._next_char()
            if char == ",":
                self._pos += 1
            elif char == "]":
                self._pos += 1
                self._expect_end()
                return
            elif char is None:
                raise self._malformed(self._pos, "the array is never closed with ]")
            else:
                raise self._malformed(self._pos, f"expected ',' or ']' after item {position}")

    def _expect_end(self) -> None:
        if self._next_char() is not None:
            raise self._malformed(self._pos, "unexpected text after the closing ]")

    def _decode_item(self, position: int) -> Any:
        while True:
            try:
                value, end = _DECODER.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                near_end = exc.pos >= len(self._buf) - _TRUNCATION_MARGIN
                truncated = near_end or exc.msg.startswith("Unterminated string")
                if not truncated or self._eof:
                    raise self._malformed(exc.pos, exc.msg) from None
                self._check_item_size(position, len(self._buf) - self._pos)
                self._read_more()
                continue
            except RecursionError:
                raise UnreadableFile(
                    f"Item {position} of the JSON array is nested too deeply to read; "
                    "items must be flat objects of column names and values.",
                    code="json_too_deep",
                ) from None
            # A number or literal that ends exactly at the end of the buffer
            # may go on in the next block ("12" of "123").
            if end == len(self._buf) and not self._eof:
                self._check_item_size(position, end - self._pos)
                self._read_more()
                continue
            self._check_item_size(position, end - self._pos)
            self._pos = end
            return value

    def _check_item_size(self, position: int, size: int) -> None:
        if size > self._max_chars:
            raise UnreadableFile(
                f"Item {position} of the JSON array is longer than {self._max_chars} characters; "
                "split its long values.",
                code="row_too_long",
                row=position,
                limit=self._max_chars,
            )


class JsonColumns:
    """Header matching for JSON keys, remembered across items.

    ``headers``, ``columns`` and ``unknown_columns`` grow as new keys appear;
    the number of distinct keys is bounded by ``MAX_COLUMNS``.
    """

    def __init__(self, index: FieldIndex) -> None:
        self._index = index
        self._seen: dict[str, str | None] = {}
        self.headers: list[str] = []
        self.columns: dict[str, str] = {}
        self.unknown_columns: list[str] = []

    def field_for(self, key: str) -> str | None:
        try:
            return self._seen[key]
        except KeyError:
            pass
        limit = bulkops_settings.MAX_COLUMNS
        if len(self._seen) >= limit:
            raise UnreadableFile(
                f"The JSON items use more than {limit} different keys, the most allowed; "
                "remove the keys the import does not need.",
                code="too_many_columns",
                limit=limit,
            )
        name = self._index.match(key)
        self._seen[key] = name
        self.headers.append(key)
        if name is None:
            self.unknown_columns.append(key)
        else:
            self.columns[key] = name
        return name


def json_rows(reader: JsonArrayReader, columns: JsonColumns) -> Iterator[SourceRow]:
    """``SourceRow``s from the items; an item that is not an object, or names
    one field twice, becomes a row with an error."""
    max_rows = bulkops_settings.MAX_ROWS
    for position, item in reader.items():
        if position > max_rows:
            raise row_limit_exceeded(max_rows)
        if not isinstance(item, dict):
            kind = "null" if item is None else _KINDS.get(type(item), type(item).__name__)
            message = f"Item {position} is {kind}, not an object of column values."
            yield _row_error(position, message)
            continue
        values: dict[str, Any] = {}
        keys: dict[str, str] = {}
        ref = None
        clash = None
        for key, value in item.items():
            if key == REF_KEY:
                ref = value
                continue
            name = columns.field_for(key)
            if name is None:
                continue
            if name in keys and clash is None:
                clash = f"Item {position} has both '{keys[name]}' and '{key}' for '{name}'."
            keys[name] = key
            values[name] = value
        errors = {api_settings.NON_FIELD_ERRORS_KEY: [clash]} if clash else None
        yield SourceRow(values=values, row=position, ref=ref, errors=errors)


def _row_error(position: int, message: str) -> SourceRow:
    return SourceRow(values={}, row=position, errors={api_settings.NON_FIELD_ERRORS_KEY: [message]})
