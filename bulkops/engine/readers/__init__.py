"""Files -> rows: the readers every file import goes through.

``open_rows`` picks a reader by the file's extension, reads and maps the
header at once (so a wrong header fails before any row), and returns a
``RowSource`` that streams ``SourceRow``s keyed by serializer field name:

- CSV/TSV/TXT: ``csv`` on a decoded stream; cells stay strings.
  (see ``text`` for encodings and bounds)
- XLSX/XLS/ODS: python-calamine, after zip-bomb and XML-entity checks; cells
  are converted for their field (see ``cells``).
- JSON: a top-level array of objects, decoded item by item (see ``jsonarray``).

Every whole-file problem raises ``UnreadableFile`` (``MissingColumns`` for a
missing required column, ``FileLimitExceeded`` over a size or row limit) with
one sentence that says what is wrong and what to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import chain
from typing import IO, Any

from rest_framework import serializers

from bulkops.conf import bulkops_settings
from bulkops.exceptions import UnreadableFile

from ..options import check_mode, natural_key_of
from .files import FileLimitExceeded, check_upload_size, file_size, guess_filename, open_path
from .headers import FieldIndex
from .jsonarray import JsonArrayReader, JsonColumns, json_rows
from .source import RowSource, read_header, table_rows
from .spreadsheet import Workbook
from .text import detect_encoding, open_text, read_records

#: The file types ``open_rows`` reads, by extension (``txt`` is read as CSV).
FORMATS: tuple[str, ...] = ("csv", "tsv", "txt", "xlsx", "xls", "ods", "json")

TEXT_DELIMITERS: dict[str, str | None] = {"csv": None, "txt": None, "tsv": "\t"}
WORKBOOK_FORMATS = ("xlsx", "xls", "ods")


def resolve_format(filename: str | None, format: str | None) -> str:
    """The format named by ``format``, else by the file name's extension."""
    if format:
        fmt = format.lower().lstrip(".")
    else:
        fmt = os.path.splitext(filename or "")[1].lower().lstrip(".")
    if fmt not in FORMATS:
        supported = ", ".join(f".{name}" for name in FORMATS)
        what = f"Files of type '.{fmt}'" if fmt else "Files without an extension"
        raise UnreadableFile(
            f"{what} cannot be imported; use one of: {supported}.",
            code="unsupported_format",
            formats=list(FORMATS),
        )
    return fmt


def open_rows(
    fileobj: IO[bytes] | str | os.PathLike[str],
    filename: str | None = None,
    *,
    serializer: serializers.Serializer,
    mode: str = "create",
    natural_key: Sequence[str] | None = None,
    sheet: str | None = None,
    format: str | None = None,
    column_map: Mapping[str, str | None] | None = None,
) -> RowSource:
    """Open a file of rows for ``serializer`` (an instance) in ``mode``.

    ``fileobj`` is a seekable binary file, read from its start, or a path.
    ``filename`` (else the path or ``fileobj.name``) picks the format by its
    extension unless ``format`` is given. ``natural_key=None`` takes the
    serializer's ``Meta.natural_key``. ``sheet`` names a workbook's sheet (the
    first worksheet by default; text formats ignore it). ``column_map`` maps file
    headers to field names as a person chose them (``None``: ignore the column);
    headers it leaves out are matched by name or label as usual, and the required
    columns are checked on the result. A map naming an unknown field raises
    ``InvalidOptions`` listing the fields.

    Raises ``UnreadableFile`` (or a subclass) before returning when the file,
    its header or its columns cannot serve ``mode``; the caller closes the
    returned ``RowSource``.
    """
    check_mode(mode)
    if isinstance(serializer, type):
        serializer = serializer()
    fmt = resolve_format(filename or guess_filename(fileobj), format)
    on_close: list[Callable[[], Any]] = []
    if isinstance(fileobj, str | os.PathLike):
        stream = open_path(fileobj)
        on_close.append(stream.close)
    else:
        stream = fileobj
    try:
        check_upload_size(file_size(stream))
        index = FieldIndex(serializer, column_map)
        key = natural_key_of(serializer, natural_key)
        if fmt in WORKBOOK_FORMATS:
            return _open_workbook(stream, fmt, index, mode, key, sheet, on_close)
        if fmt == "json":
            return _open_json(stream, index, on_close)
        return _open_text_table(stream, fmt, index, mode, key, on_close)
    except BaseException:
        for close in reversed(on_close):
            close()
        raise


def _open_text_table(
    fileobj: IO[bytes],
    fmt: str,
    index: FieldIndex,
    mode: str,
    natural_key: tuple[str, ...],
    on_close: list[Callable[[], Any]],
) -> RowSource:
    records, text = read_records(
        fileobj, delimiter=TEXT_DELIMITERS[fmt], kind="TSV" if fmt == "tsv" else "CSV"
    )
    on_close.append(text.close)
    _, header_map = read_header(records, index, mode=mode, natural_key=natural_key)
    return RowSource(
        format=fmt,
        rows=table_rows(records, header_map, index, convert=False),
        headers=header_map.headers,
        columns=header_map.columns,
        unknown_columns=header_map.unknown_columns,
        on_close=on_close,
    )


def _open_workbook(
    fileobj: IO[bytes],
    fmt: str,
    index: FieldIndex,
    mode: str,
    natural_key: tuple[str, ...],
    sheet: str | None,
    on_close: list[Callable[[], Any]],
) -> RowSource:
    workbook = Workbook(fileobj, fmt=fmt, sheet=sheet)
    on_close.append(workbook.close)
    records = workbook.records()
    header_row, header_map = read_header(
        records,
        index,
        mode=mode,
        natural_key=natural_key,
        column_label=workbook.column_label,
        empty_message=f"The sheet '{workbook.sheet_name}' has no column names in any row.",
    )
    return RowSource(
        format=fmt,
        sheet=workbook.sheet_name,
        rows=table_rows(records, header_map, index, convert=True),
        headers=header_map.headers,
        columns=header_map.columns,
        unknown_columns=header_map.unknown_columns,
        total_rows=workbook.last_row - header_row,
        on_close=on_close,
    )


def _open_json(
    fileobj: IO[bytes], index: FieldIndex, on_close: list[Callable[[], Any]]
) -> RowSource:
    text = open_text(fileobj, detect_encoding(fileobj, kind="JSON"))
    on_close.append(text.close)
    reader = JsonArrayReader(text, max_chars=bulkops_settings.MAX_CELL_CHARS)
    reader.start()
    columns = JsonColumns(index)
    rows: Iterator[Any] = json_rows(reader, columns)
    # Decode the first item now: a malformed start fails here, and the first
    # object's keys are known as the source's headers before iteration.
    first = next(rows, None)
    if first is not None:
        rows = chain([first], rows)
    return RowSource(
        format="json",
        rows=rows,
        headers=columns.headers,
        columns=columns.columns,
        unknown_columns=columns.unknown_columns,
        on_close=on_close,
    )


__all__ = ["FORMATS", "FileLimitExceeded", "RowSource", "open_rows", "resolve_format"]
