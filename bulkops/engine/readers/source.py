"""``RowSource``: the rows of one file, mapped to a serializer's fields."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rest_framework.settings import api_settings

from bulkops.conf import bulkops_settings
from bulkops.engine.displays import dict_display
from bulkops.engine.rows import SourceRow
from bulkops.exceptions import UnreadableFile

from .cells import Converter, converter_for, is_empty
from .files import FileLimitExceeded
from .headers import FieldIndex, HeaderMap, check_required_columns, column_number, map_headers

Record = tuple[int, list[Any]]


class RowSource:
    """The rows of one file, ready for the engine.

    ``headers`` are the column names as found in the file, ``columns`` maps
    each recognised header to its serializer field, ``unknown_columns`` lists
    the others (their cells are dropped), and ``total_rows`` is the number of
    rows below the header when the format knows it up front (workbooks; blank
    rows included), else ``None``. Iterating yields one ``SourceRow`` per
    non-blank data row; whole-file problems found on the way raise
    ``UnreadableFile``. Close it, or use it as a context manager.
    """

    def __init__(
        self,
        *,
        format: str,
        rows: Iterator[SourceRow],
        headers: list[str],
        columns: dict[str, str],
        unknown_columns: list[str],
        total_rows: int | None = None,
        sheet: str | None = None,
        on_close: Iterable[Callable[[], Any]] = (),
    ) -> None:
        self.format = format
        self.sheet = sheet
        self.headers = headers
        self.columns = columns
        self.unknown_columns = unknown_columns
        self.total_rows = total_rows
        self._rows = rows
        self._on_close = list(on_close)

    def __iter__(self) -> Iterator[SourceRow]:
        # The rows themselves: a loop over the source then takes each from the
        # reader's generator directly, not through __next__ (a call per row).
        return self._rows

    def __next__(self) -> SourceRow:
        return next(self._rows)

    def close(self) -> None:
        """Release the file and any decoded workbook. Safe to call twice."""
        close_rows = getattr(self._rows, "close", None)
        if close_rows is not None:
            close_rows()
        while self._on_close:
            self._on_close.pop()()

    def __enter__(self) -> RowSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RowSource {self.format} columns={list(self.columns.values())}>"


def row_limit_exceeded(limit: int) -> FileLimitExceeded:
    return FileLimitExceeded(
        f"The file has more than {limit} rows, the most one import may hold; "
        "split it into smaller files.",
        code="too_many_rows",
        limit=limit,
    )


def read_header(
    records: Iterator[Record],
    index: FieldIndex,
    *,
    mode: str,
    natural_key: tuple[str, ...],
    column_label: Callable[[int], str] = column_number,
    empty_message: str = "The file is empty; the first row must hold the column names.",
) -> tuple[int, HeaderMap]:
    """Consume records up to the first non-blank one and map it as the header.

    Returns its row number and the mapping; raises ``UnreadableFile`` for a
    file without one, too many columns, duplicates or missing columns.
    """
    found = next((record for record in records if not all(map(is_empty, record[1]))), None)
    if found is None:
        raise UnreadableFile(empty_message, code="empty_file")
    row_number, cells = found
    width = len(cells)
    while width and is_empty(cells[width - 1]):
        width -= 1
    limit = bulkops_settings.MAX_COLUMNS
    if width > limit:
        raise UnreadableFile(
            f"The header has {width} columns, more than the limit of {limit}; "
            "remove the columns the import does not need.",
            code="too_many_columns",
            limit=limit,
            received=width,
        )
    header_map = map_headers(cells[:width], index, column_label=column_label)
    check_required_columns(header_map, index, mode=mode, natural_key=natural_key)
    return row_number, header_map


def table_rows(
    records: Iterator[Record],
    header_map: HeaderMap,
    index: FieldIndex,
    *,
    convert: bool,
) -> Iterator[SourceRow]:
    """The data rows below a header, as ``SourceRow``s.

    ``convert`` applies the per-field cell converters (typed spreadsheet
    cells); text formats pass cells through as strings. A row with a non-empty
    cell right of the header's last column carries a row error instead of
    failing the file.
    """
    plan: list[tuple[int, str, Converter | None]] = [
        (position, name, converter_for(index.fields[name]) if convert else None)
        for position, name in header_map.positions
    ]
    width = header_map.width
    max_rows = bulkops_settings.MAX_ROWS
    count = 0
    # Text cells that are all there (no empty or blank cell, none right of the header):
    # the row is the header's names with its cells, in the plan's order.
    whole = not convert and len(plan) > 1
    values_of = dict_display((name, position) for position, name, _ in plan) if whole else None
    for row_number, cells in records:
        if whole and len(cells) == width and all(cells):
            try:
                blank = any(map(str.isspace, cells))
            except TypeError:  # a cell that is not text: the general path below
                blank = True
            if not blank:
                count += 1
                if count > max_rows:
                    raise row_limit_exceeded(max_rows)
                yield SourceRow(values_of(cells), row_number)  # type: ignore[misc]
                continue
        last = len(cells) - 1
        while last >= 0 and is_empty(cells[last]):
            last -= 1
        if last < 0:
            continue  # a blank row: skipped, but it still took a row number
        count += 1
        if count > max_rows:
            raise row_limit_exceeded(max_rows)
        values: dict[str, Any] = {}
        for position, name, convert_cell in plan:
            if position > last:
                continue
            value = cells[position]
            # is_empty() inlined, and text never converted (cells.py leaves it
            # as typed): this loop runs once per cell of the file.
            if value.__class__ is str:
                if not value or value.isspace():
                    continue
                values[name] = value
            elif value is not None:
                values[name] = convert_cell(value) if convert_cell else value
        errors = None
        if last >= width:
            errors = {
                api_settings.NON_FIELD_ERRORS_KEY: [
                    f"Row {row_number} has {last + 1} cells but the header has {width} columns."
                ]
            }
        yield SourceRow(values=values, row=row_number, errors=errors)
