"""What the preview shows of a validated job: its failed rows, by page, never all at once.

The rows and their errors come from the job's ``BulkRowError`` records (one per failed
row, in row order); the columns are the file's own headers, in file order, as the job's
reader mapped them (``job.options["source"]["columns"]``: header -> field). Nothing here reads the
uploaded file again.
"""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import IO, Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet

from bulkops.errorfile import ErrorFileWriter, error_messages
from bulkops.results import ERROR, RowResult

ERRORS_PER_PAGE = 50
ROWS_PER_PAGE = 25
# Django refuses a POST of more than DATA_UPLOAD_MAX_NUMBER_FIELDS (1,000) fields; the
# fix-in-place form sends one field per cell of the page.
MAX_CELLS_PER_PAGE = 900
ROW_ERRORS_KEY = ""  # error_messages() names errors that belong to no field so

_TAGGED = "__bulkops_type__"


def source_info(job: Any) -> Mapping[str, Any]:
    """What the job's reader learnt of the file (format, sheet, headers, columns)."""
    return (job.options or {}).get("source") or {}


def job_columns(job: Any) -> list[tuple[str, str]]:
    """``(file header, field)`` of the mapped columns, in file order."""
    info = source_info(job)
    columns: Mapping[str, str] = info.get("columns") or {}
    headers = info.get("headers") or list(columns)
    return [(header, columns[header]) for header in headers if header in columns]


def header_for_fields(job: Any) -> dict[str, str]:
    return {name: header for header, name in job_columns(job)}


def display_value(value: Any) -> str:
    """A stored cell as the text a person typed, for the preview and its inputs."""
    if value is None:
        return ""
    if isinstance(value, dict) and _TAGGED in value:  # the jobs' JSON codec for dates
        return str(value.get("v", ""))
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


@dataclass
class ErrorLine:
    row: int | None
    column: str  # the file's header, "" for an error of the whole row
    field: str
    message: str


@dataclass
class Cell:
    header: str
    field: str
    value: str
    messages: list[str] = dataclass_field(default_factory=list)


@dataclass
class FailedRow:
    row: int | None
    index: int
    cells: list[Cell]
    row_messages: list[str]  # errors of the row as a whole (duplicates, ...)


def _lines(error: Any, headers: Mapping[str, str]) -> Iterator[ErrorLine]:
    for name, message in error_messages(error.errors):
        base = name.split(".", 1)[0].split("[", 1)[0]
        yield ErrorLine(
            row=error.row,
            column=headers.get(base, name if name else ROW_ERRORS_KEY),
            field=name,
            message=message,
        )


def failed_rows(job: Any) -> QuerySet:
    return job.row_errors.order_by("index")


def errors_page(job: Any, number: Any) -> tuple[Page, list[ErrorLine]]:
    """One page of failed rows (``ERRORS_PER_PAGE``) as row / column / message lines."""
    page = Paginator(failed_rows(job), ERRORS_PER_PAGE).get_page(number)
    headers = header_for_fields(job)
    lines = [line for error in page.object_list for line in _lines(error, headers)]
    return page, lines


def rows_per_page(job: Any) -> int:
    width = max(len(job_columns(job)), 1)
    return max(1, min(ROWS_PER_PAGE, MAX_CELLS_PER_PAGE // width))


def rows_page(job: Any, number: Any) -> tuple[Page, list[FailedRow]]:
    """One page of failed rows, cell by cell, each cell with its own messages."""
    page = Paginator(failed_rows(job), rows_per_page(job)).get_page(number)
    columns = job_columns(job)
    known = {name for _, name in columns}
    rows = []
    for error in page.object_list:
        by_field: dict[str, list[str]] = {}
        row_messages: list[str] = []
        for name, message in error_messages(error.errors):
            base = name.split(".", 1)[0].split("[", 1)[0]
            if base in known:
                by_field.setdefault(base, []).append(message)
            else:
                row_messages.append(f"{name}: {message}" if name else message)
        values = error.values if isinstance(error.values, Mapping) else {}
        cells = [
            Cell(header, name, display_value(values.get(name)), by_field.get(name, []))
            for header, name in columns
        ]
        rows.append(FailedRow(error.row, error.index, cells, row_messages))
    return page, rows


def parse_edits(
    job: Any, rows: list[FailedRow], data: Mapping[str, Any]
) -> dict[int, dict[str, str]]:
    """The cells of ``rows`` whose posted value differs from the stored one:
    ``{row number: {field: new text}}``. Fields are ``cell-<row>-<field>``; anything
    else posted is ignored."""
    edits: dict[int, dict[str, str]] = {}
    for failed in rows:
        if failed.row is None:
            continue
        for cell in failed.cells:
            posted = data.get(f"cell-{failed.row}-{cell.field}")
            if posted is None:
                continue
            posted = str(posted)
            if posted != cell.value:
                edits.setdefault(failed.row, {})[cell.field] = posted
    return edits


# -- the failed rows as a file ----------------------------------------------------------


FAILED_ROW_FORMATS = ("csv", "xlsx")


def download_formats(job: Any) -> list[str]:
    """The formats offered: the upload's own where a writer exists (workbooks as .xlsx),
    and CSV."""
    uploaded = (job.filename or "").rsplit(".", 1)[-1].lower()
    first = "xlsx" if uploaded in ("xlsx", "xls", "ods") else "csv"
    return [first] + [fmt for fmt in FAILED_ROW_FORMATS if fmt != first]


def write_failed_rows(job: Any, fmt: str) -> IO[bytes]:
    """The failed rows as uploaded, plus ``row`` and ``errors`` columns, in a temporary
    file (rewound; the caller closes it). Streams: a million failures never sit in memory."""
    columns = job_columns(job)
    out = tempfile.TemporaryFile()  # noqa: SIM115 - returned; FileResponse closes it
    writer = ErrorFileWriter(out, [header for header, _ in columns], dict(columns), format=fmt)
    for error in failed_rows(job).iterator(chunk_size=1000):
        values = error.values if isinstance(error.values, Mapping) else {}
        plain = {name: _plain(value) for name, value in values.items()}
        writer.write(
            RowResult(error.index, ERROR, error.row, error.ref, errors=error.errors, values=plain)
        )
    writer.close()
    out.seek(0)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict) and _TAGGED in value:
        return display_value(value)
    return value
