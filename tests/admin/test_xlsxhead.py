"""The streaming header reader agrees with the engine's reader, or steps aside."""

from __future__ import annotations

import io

import pytest
from openpyxl import Workbook
from openpyxl.cell.rich_text import CellRichText, TextBlock
from openpyxl.cell.text import InlineFont

from bulkops.admin.xlsxhead import read_head
from bulkops.engine.readers.headers import header_text
from bulkops.engine.readers.spreadsheet import Workbook as EngineWorkbook


def book_bytes(fill) -> bytes:
    book = Workbook()
    fill(book)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def engine_header(data: bytes, sheet=None) -> list[str]:
    workbook = EngineWorkbook(io.BytesIO(data), fmt="xlsx", sheet=sheet)
    try:
        for _, cells in workbook.records():
            if any(cell not in (None, "") for cell in cells):
                texts = [header_text(cell) for cell in cells]
                while texts and not texts[-1]:
                    texts.pop()
                return texts
    finally:
        workbook.close()
    return []


def plain(book):
    sheet = book.active
    sheet.append(["sku", "Unit price", "Größe", "naïve name"])
    sheet.append(["A", 1, 2, 3])


def blank_rows_and_columns_first(book):
    sheet = book.active
    sheet["C4"] = "sku"
    sheet["E4"] = "name"
    sheet["C5"] = "A-1"


def rich_text(book):
    sheet = book.active
    sheet["A1"] = CellRichText(["Unit ", TextBlock(InlineFont(b=True), "price")])
    sheet["B1"] = "sku"
    sheet["A2"] = 1


def named_sheet(book):
    book.active.append(["first"])
    book.active.append(["x"])
    other = book.create_sheet("Products")
    other.append(["sku", "name"])
    other.append(["A", "B"])


@pytest.mark.parametrize("fill", [plain, blank_rows_and_columns_first, rich_text])
def test_the_header_is_the_engines(fill):
    data = book_bytes(fill)
    head = read_head(io.BytesIO(data))
    assert head is not None
    # The same names in the same order (the engine counts columns from the sheet's first
    # used one, this reader from A; both skip empty header cells).
    assert [h for h in head.header if h] == [h for h in engine_header(data) if h]
    assert head.has_rows


def test_a_named_sheet():
    data = book_bytes(named_sheet)
    assert read_head(io.BytesIO(data), sheet="products").header == ["sku", "name"]
    assert read_head(io.BytesIO(data), sheet="Missing") is None
    assert read_head(io.BytesIO(data)).header == ["first"]


def test_only_a_header():
    data = book_bytes(lambda book: book.active.append(["sku", "name"]))
    head = read_head(io.BytesIO(data))
    assert head.header == ["sku", "name"] and head.has_rows is False


def test_steps_aside_for_what_it_does_not_read():
    def boolean_header(book):
        book.active.append([True, "sku"])
        book.active.append([1, 2])

    assert read_head(io.BytesIO(book_bytes(boolean_header))) is None
    assert read_head(io.BytesIO(b"not a zip")) is None
