"""Error files: the rows that failed, as uploaded, with their errors.

One writer serves every door (the ``bulk_import`` command, the admin download,
the jobs API): it streams rows as the engine reports them, so a million-row
import with many failures never holds them in memory.

Each failed row is written under the file's own header names (the mapped
columns, in file order) plus a ``row`` column (the spreadsheet row number) and
an ``errors`` column (``field: message; field: message``). Text cells that a
spreadsheet program would run as a formula (``= + - @``, tab, carriage return)
get a leading ``'``: the file holds what users typed, and opening it must not
execute it.
"""

from __future__ import annotations

import csv
import datetime
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import IO, Any

from rest_framework.settings import api_settings

from .exceptions import BulkOpsError
from .results import RowResult

FORMATS = ("csv", "xlsx")
ROW_COLUMN = "row"
ERRORS_COLUMN = "errors"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def format_for_path(path: str | os.PathLike[str]) -> str:
    """``xlsx`` for a path ending in ``.xlsx``, else ``csv``."""
    return "xlsx" if os.fspath(path).lower().endswith(".xlsx") else "csv"


def neutralise(value: str) -> str:
    """Text a spreadsheet program shows as typed instead of evaluating it."""
    if value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def error_messages(errors: Any, field: str = "") -> Iterator[tuple[str, str]]:
    """``(field, message)`` pairs from DRF's error shape, nested fields as ``a.b``.

    Errors that belong to no field (``non_field_errors``) have the field ``""``
    or, inside a nested serializer, the nested field's name.
    """
    if isinstance(errors, Mapping):
        for key, value in errors.items():
            key = str(key)
            if key == api_settings.NON_FIELD_ERRORS_KEY:
                name = field
            else:
                name = f"{field}.{key}" if field else key
            yield from error_messages(value, name)
    elif isinstance(errors, list | tuple):
        for position, item in enumerate(errors):
            if isinstance(item, Mapping):
                # A list of nested objects: name each by its position.
                yield from error_messages(item, f"{field}[{position}]")
            else:
                yield from error_messages(item, field)
    elif errors is not None:
        yield field, str(errors)


def flatten_errors(errors: Any) -> str:
    """DRF's error shape as one line: ``price: Must be >= 0.; sku: Required.``"""
    return "; ".join(
        f"{field}: {message}" if field else message for field, message in error_messages(errors)
    )


class ErrorFileWriter:
    """Write failed rows to ``fileobj`` (a binary file) as CSV or XLSX.

    ``headers`` are the file's mapped column names in file order;
    ``field_for_header`` maps each to its serializer field, the key of
    ``RowResult.values``. Call ``write`` for every result (rows that did not
    fail are skipped) and ``close`` at the end; the caller closes ``fileobj``.

    CSV is UTF-8 with a byte-order mark, which spreadsheet programs need to
    read it as UTF-8. XLSX needs openpyxl.
    """

    def __init__(
        self,
        fileobj: IO[bytes],
        headers: Sequence[str],
        field_for_header: Mapping[str, str],
        *,
        format: str = "csv",
    ) -> None:
        if format not in FORMATS:
            raise BulkOpsError(
                f"Error files can be {' or '.join(FORMATS)}, not {format!r}.",
                code="invalid_error_format",
            )
        self.fileobj = fileobj
        self.headers = list(headers)
        self.fields = [field_for_header[header] for header in self.headers]
        self.format = format
        self.rows_written = 0
        self._closed = False
        self._sheet: _CsvSheet | _XlsxSheet
        if format == "xlsx":
            self._sheet = _XlsxSheet(fileobj)
        else:
            self._sheet = _CsvSheet(fileobj)
        self._sheet.append([neutralise(h) for h in [*self.headers, ROW_COLUMN, ERRORS_COLUMN]])

    def write(self, result: RowResult) -> None:
        """Add ``result``'s row if it failed with errors."""
        if result.errors is None:
            return
        values = result.values if isinstance(result.values, Mapping) else {}
        cells = [self._sheet.cell(values.get(field)) for field in self.fields]
        cells.append(result.row if result.row is not None else result.index)
        cells.append(neutralise(flatten_errors(result.errors)))
        self._sheet.append(cells)
        self.rows_written += 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sheet.close()

    def __enter__(self) -> ErrorFileWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


class _CsvSheet:
    """CSV rows encoded and written one at a time."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self.fileobj = fileobj
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer)
        fileobj.write(b"\xef\xbb\xbf")

    def cell(self, value: Any) -> Any:
        # A number is never a formula: -5 stays -5 for the next upload.
        return _as_text(value) if _is_number(value) else neutralise(_as_text(value))

    def append(self, cells: list[Any]) -> None:
        self._writer.writerow(cells)
        self.fileobj.write(self._buffer.getvalue().encode("utf-8"))
        self._buffer.seek(0)
        self._buffer.truncate()

    def close(self) -> None:
        self.fileobj.flush()


class _XlsxSheet:
    """An openpyxl write-only workbook: rows go to a temporary file, not memory."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        try:
            from openpyxl import Workbook
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise BulkOpsError(
                "Writing .xlsx error files needs openpyxl (pip install openpyxl); "
                "or ask for a .csv file.",
                code="xlsx_unavailable",
            ) from exc
        self.fileobj = fileobj
        self._book = Workbook(write_only=True)
        self._sheet = self._book.create_sheet("Failed rows")

    def cell(self, value: Any) -> Any:
        if value is None or _is_number(value) or isinstance(value, bool):
            return value
        if isinstance(value, datetime.date | datetime.time) and not getattr(value, "tzinfo", None):
            return value
        return neutralise(_as_text(value))

    def append(self, cells: list[Any]) -> None:
        self._sheet.append(cells)

    def close(self) -> None:
        self._book.save(self.fileobj)
        self.fileobj.flush()
