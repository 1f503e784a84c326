"""bulkops.engine.readers: files of every format -> SourceRows.

Fixture files are written at test time: CSV by hand, XLSX with openpyxl, XLS
with xlwt, ODS with odfpy. No database is needed.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import xlwt
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st
from odf.opendocument import OpenDocumentSpreadsheet
from odf.table import Table, TableCell, TableRow
from odf.text import P

from bulkops.engine.readers import FORMATS, FileLimitExceeded, RowSource, open_rows
from bulkops.engine.readers import text as text_reader
from bulkops.exceptions import LimitExceeded, MissingColumns, UnreadableFile
from project.catalog.serializers import OrderSerializer, ProductSerializer

MiB = 1024 * 1024

PRODUCT_HEADER = ["sku", "name", "category", "price", "quantity", "active", "released"]
PRODUCT_ROW = ["00123", "Hammer", "Tools", 19.99, 15, True, datetime.date(2024, 3, 1)]


# Writers -------------------------------------------------------------------


def write_xlsx(path: Path, rows: list[list[Any]], *, title: str = "Products", start_row: int = 1):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = title
    for offset, row in enumerate(rows):
        for column, value in enumerate(row, start=1):
            if value is not None:
                sheet.cell(start_row + offset, column, value)
    book.save(path)
    return path


def write_xls(path: Path, rows: list[list[Any]]) -> Path:
    book = xlwt.Workbook()
    sheet = book.add_sheet("Products")
    date_style = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if isinstance(value, datetime.date):
                sheet.write(r, c, value, date_style)
            elif value is not None:
                sheet.write(r, c, value)
    book.save(str(path))
    return path


def _ods_cell(value: Any) -> TableCell:
    if value is None:
        return TableCell()
    if isinstance(value, bool):
        return TableCell(valuetype="boolean", booleanvalue=str(value).lower())
    if isinstance(value, datetime.date):
        cell = TableCell(valuetype="date", datevalue=value.isoformat())
    elif isinstance(value, int | float):
        cell = TableCell(valuetype="float", value=value)
    else:
        cell = TableCell(valuetype="string")
    cell.addElement(P(text=str(value)))
    return cell


def write_ods(path: Path, rows: list[list[Any]]) -> Path:
    document = OpenDocumentSpreadsheet()
    table = Table(name="Products")
    for row in rows:
        table_row = TableRow()
        for value in row:
            table_row.addElement(_ods_cell(value))
        table.addElement(table_row)
    document.spreadsheet.addElement(table)
    document.save(str(path))
    return path


def csv_text(rows: list[list[Any]], delimiter: str = ",") -> str:
    return "".join(delimiter.join(str(v) for v in row) + "\r\n" for row in rows)


def write_json(path: Path, rows: list[list[Any]]) -> Path:
    header, *data = rows
    items = [dict(zip(header, row, strict=True)) for row in data]
    path.write_text(json.dumps(items, default=str))
    return path


def read(source: Any, filename: str | None = None, **options: Any) -> tuple[RowSource, list]:
    options.setdefault("serializer", ProductSerializer())
    with open_rows(source, filename, **options) as rows:
        return rows, list(rows)


def rezip(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    """A copy of a zip archive with some parts' contents replaced."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for item in old.infolist():
            new.writestr(item.filename, replace.get(item.filename, old.read(item.filename)))
    return target


# Every format --------------------------------------------------------------

TYPED_VALUES = {
    "sku": "00123",
    "name": "Hammer",
    "category": "Tools",
    "price": "19.99",
    "quantity": 15,
    "active": True,
    "released": datetime.date(2024, 3, 1),
}
TEXT_VALUES = {
    "sku": "00123",
    "name": "Hammer",
    "category": "Tools",
    "price": "19.99",
    "quantity": "15",
    "active": "True",
    "released": "2024-03-01",
}


@pytest.mark.parametrize(
    ("extension", "write", "expected", "total"),
    [
        ("csv", lambda p, rows: p.write_text(csv_text(rows)), TEXT_VALUES, None),
        ("txt", lambda p, rows: p.write_text(csv_text(rows)), TEXT_VALUES, None),
        ("tsv", lambda p, rows: p.write_text(csv_text(rows, "\t")), TEXT_VALUES, None),
        ("xlsx", write_xlsx, TYPED_VALUES, 1),
        ("xls", write_xls, TYPED_VALUES, 1),
        ("ods", write_ods, TYPED_VALUES, 1),
        ("json", write_json, {**TYPED_VALUES, "price": 19.99, "released": "2024-03-01"}, None),
    ],
)
def test_every_format_yields_rows_keyed_by_field(tmp_path, extension, write, expected, total):
    path = tmp_path / f"products.{extension}"
    write(path, [PRODUCT_HEADER, PRODUCT_ROW])

    source, rows = read(path)

    assert source.format == extension
    assert source.headers == PRODUCT_HEADER
    assert source.columns == {name: name for name in PRODUCT_HEADER}
    assert source.unknown_columns == []
    assert source.total_rows == total
    assert len(rows) == 1
    assert rows[0].values == expected
    assert rows[0].row == (1 if extension == "json" else 2)
    assert rows[0].errors is None


def test_formats_lists_every_supported_extension():
    assert set(FORMATS) == {"csv", "tsv", "txt", "xlsx", "xls", "ods", "json"}


def test_format_argument_overrides_the_extension():
    _, rows = read(io.BytesIO(b"sku\tname\nA\tB\n"), "upload.dat", format="tsv", mode="update")
    assert rows[0].values == {"sku": "A", "name": "B"}


def test_unknown_extension_lists_the_supported_formats():
    with pytest.raises(UnreadableFile) as caught:
        read(io.BytesIO(b"x"), "report.pdf")
    assert caught.value.message == (
        "Files of type '.pdf' cannot be imported; "
        "use one of: .csv, .tsv, .txt, .xlsx, .xls, .ods, .json."
    )


def test_accepts_a_django_upload_and_leaves_it_open():
    upload = SimpleUploadedFile("p.csv", b"sku,name\nA-1,Saw\n")
    _, rows = read(upload, upload.name, mode="update")
    assert rows[0].values == {"sku": "A-1", "name": "Saw"}
    assert not upload.closed


def test_a_path_is_opened_and_closed(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("sku\nA\n")
    source = open_rows(path, serializer=ProductSerializer(), mode="delete")
    handle = source._on_close[0].__self__
    source.close()
    assert handle.closed


# Encodings ----------------------------------------------------------------


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.encode("utf-8"),
        lambda text: text.encode("utf-8-sig"),
        lambda text: text.encode("utf-16"),  # with a BOM, in native order
        lambda text: b"\xfe\xff" + text.encode("utf-16-be"),
        lambda text: b"\xff\xfe" + text.encode("utf-16-le"),
        lambda text: text.encode("utf-32"),
        lambda text: text.encode("cp1252"),  # not UTF-8: the fallback
    ],
    ids=["utf-8", "utf-8-bom", "utf-16", "utf-16-be", "utf-16-le", "utf-32", "cp1252"],
)
def test_text_encodings(encode):
    data = encode("SKU,name\nA-1,Café “crème” €5\n")
    source, rows = read(io.BytesIO(data), "p.csv", mode="update")
    assert source.headers == ["SKU", "name"]
    assert rows[0].values == {"sku": "A-1", "name": "Café “crème” €5"}


def test_cp1252_fallback_is_found_past_the_first_block():
    # The only non-UTF-8 byte sits far down the file.
    data = b"sku,name\n" + b"A,plain\n" * 300_000 + b"B,caf\xe9\n"
    _, rows = read(io.BytesIO(data), "p.csv", mode="update")
    assert rows[-1].values == {"sku": "B", "name": "café"}


def test_fallback_encoding_setting_is_used(settings):
    settings.BULKOPS = {"FALLBACK_ENCODING": "latin-1"}
    _, rows = read(io.BytesIO(b"sku,name\nA,\x81\xe9\n"), "p.csv", mode="update")
    assert rows[0].values["name"] == "\x81é"


def test_undecodable_file_is_refused():
    # 0x81 is neither UTF-8 nor defined in cp1252.
    with pytest.raises(UnreadableFile) as caught:
        read(io.BytesIO(b"sku,name\nA,\xe9\x81\n"), "p.csv", mode="update")
    assert caught.value.code == "bad_encoding"
    assert caught.value.message == (
        "The file is neither UTF-8 nor cp1252 text (byte 0x81 at position 12); "
        "save it as UTF-8 and upload it again."
    )


def test_broken_utf16_is_refused():
    with pytest.raises(UnreadableFile, match="not valid UTF-16 text"):
        read(io.BytesIO(b"\xff\xfes\x00k\x00u\x00\n\x00\x00\xd8"), "p.csv", mode="update")


def test_semicolon_delimiter_is_sniffed_from_the_header():
    _, rows = read(io.BytesIO(b"sku;name;price\nA;Saw, big;1,5\n"), "p.csv", mode="update")
    assert rows[0].values == {"sku": "A", "name": "Saw, big", "price": "1,5"}


# Headers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", ["placed_at", "Placed at", "PLACED-AT", "  placed   at ", "Placed_At"]
)
def test_headers_match_by_name_or_label_ignoring_case_and_spacing(header):
    data = f"customer,product,quantity,{header}\na@example.com,A-1,2,2024-01-02T10:00\n"
    source, rows = read(io.BytesIO(data.encode()), "o.csv", serializer=OrderSerializer())
    assert source.columns[header] == "placed_at"
    assert rows[0].values["placed_at"] == "2024-01-02T10:00"


def test_label_from_verbose_name_matches():
    # Product.sku has verbose_name "SKU"; the header "s k u" only matches by
    # name after normalising, "SKU" by either.
    source, _ = read(io.BytesIO(b"SKU,Name\nA,B\n"), "p.csv", mode="update")
    assert source.columns == {"SKU": "sku", "Name": "name"}


def test_unknown_columns_are_listed_and_dropped():
    data = b"sku,colour,name,Notes\nA,red,Saw,fragile\n"
    source, rows = read(io.BytesIO(data), "p.csv", mode="update")
    assert source.unknown_columns == ["colour", "Notes"]
    assert rows[0].values == {"sku": "A", "name": "Saw"}


def test_id_column_is_accepted_for_update():
    source, rows = read(io.BytesIO(b"ID,price\n7,2.50\n"), "p.csv", mode="update")
    assert source.columns == {"ID": "id", "price": "price"}
    assert rows[0].values == {"id": "7", "price": "2.50"}


def test_missing_required_column_stops_before_any_row():
    with pytest.raises(MissingColumns) as caught:
        open_rows(
            io.BytesIO(b"sku,name,category,qty\nA,B,C,1\n"), "p.csv", serializer=ProductSerializer()
        )
    assert (
        caught.value.message == "Column 'price' is required; the file has: sku, name, category, qty"
    )
    assert caught.value.code == "missing_columns"
    assert caught.value.extra["missing"] == ["price"]


def test_missing_columns_in_a_workbook(tmp_path):
    path = write_xlsx(tmp_path / "p.xlsx", [["sku", "name", "qty"], ["A", "B", 1]])
    with pytest.raises(MissingColumns) as caught:
        read(path)
    assert caught.value.message == (
        "Columns 'category' and 'price' are required; the file has: sku, name, qty"
    )


def test_update_needs_id_or_natural_key():
    with pytest.raises(MissingColumns) as caught:
        read(io.BytesIO(b"name,price\nA,1\n"), "p.csv", mode="update")
    assert caught.value.message == (
        "Column 'id' or 'sku' is required to find the rows to update; the file has: name, price"
    )


def test_duplicate_headers_name_their_columns(tmp_path):
    path = write_xlsx(tmp_path / "p.xlsx", [["SKU", "name", "price", "sku"], ["A", "B", 1, "A"]])
    with pytest.raises(UnreadableFile) as caught:
        read(path, mode="update")
    assert caught.value.code == "duplicate_columns"
    assert caught.value.message == (
        "Each column may appear only once, but 'SKU' (column A) and 'sku' (column D) both "
        "name the field 'sku'; remove or rename the extra columns."
    )


def test_the_same_header_twice_is_refused():
    with pytest.raises(UnreadableFile) as caught:
        read(io.BytesIO(b"sku,note,name,note\nA,x,B,y\n"), "p.csv", mode="update")
    assert caught.value.message == (
        "Each column may appear only once, but 'note' is in columns 2 and 4; "
        "remove or rename the extra columns."
    )


def test_empty_header_cells_are_skipped():
    data = b"sku,,name,,\nA,ignored,B,,\n"
    source, rows = read(io.BytesIO(data), "p.csv", mode="update")
    assert source.headers == ["sku", "", "name"]
    assert rows[0].values == {"sku": "A", "name": "B"}
    assert rows[0].errors is None


# Cells --------------------------------------------------------------------


def test_workbook_cells_are_converted_for_their_fields(tmp_path):
    path = write_xlsx(
        tmp_path / "p.xlsx",
        [
            PRODUCT_HEADER,
            ["00123", 1234.0, 7, 0.1, 15.0, 1, datetime.datetime(2024, 3, 1, 0, 0)],
            ["A-2", "Saw", "Tools", 1e-7, 2.5, False, datetime.datetime(2024, 3, 1, 9, 30)],
        ],
    )
    _, rows = read(path)
    assert rows[0].values == {
        "sku": "00123",
        "name": 1234,
        "category": 7,
        "price": "0.1",
        "quantity": 15,
        "active": 1,
        "released": datetime.date(2024, 3, 1),
    }
    # Left for DRF to reject with its own message.
    assert rows[1].values["quantity"] == 2.5
    assert rows[1].values["price"] == "1E-7"
    assert rows[1].values["released"] == datetime.datetime(2024, 3, 1, 9, 30)


def test_workbook_datetimes_stay_datetimes_and_dates_become_midnight(tmp_path):
    header = ["customer", "product", "quantity", "placed_at"]
    path = write_xlsx(
        tmp_path / "o.xlsx",
        [
            header,
            ["a@example.com", "A-1", 2.0, datetime.datetime(2024, 1, 2, 10, 30)],
            ["a@example.com", "A-1", 3.0, datetime.date(2024, 1, 3)],
        ],
    )
    _, rows = read(path, serializer=OrderSerializer())
    assert rows[0].values["placed_at"] == datetime.datetime(2024, 1, 2, 10, 30)
    assert rows[1].values["placed_at"] == datetime.datetime(2024, 1, 3, 0, 0)
    assert rows[1].values["quantity"] == 3


def test_empty_cells_and_blank_strings_are_omitted(tmp_path):
    data = b"sku,name,price,quantity\nA,  ,,0\n B ,x y ,1.0,\n"
    _, rows = read(io.BytesIO(data), "p.csv", mode="update")
    assert [r.values for r in rows] == [
        {"sku": "A", "quantity": "0"},
        {"sku": " B ", "name": "x y ", "price": "1.0"},
    ]
    path = write_xlsx(tmp_path / "p.xlsx", [["sku", "name", "price"], ["A", "   ", None]])
    _, rows = read(path, mode="update")
    assert rows[0].values == {"sku": "A"}


def test_nul_characters_pass_through_for_the_field_to_reject():
    _, rows = read(io.BytesIO(b"sku,name\nA,B\x00C\n"), "p.csv", mode="update")
    assert rows[0].values == {"sku": "A", "name": "B\x00C"}


# Row numbers ----------------------------------------------------------------


def test_csv_row_numbers_count_records_and_blank_rows():
    data = b'sku,name\nA,"two\nlines"\n\n,\nB,x\r\n"C","three\r\nmore\r\nlines"\nD,y\n'
    _, rows = read(io.BytesIO(data), "p.csv", mode="update")
    assert [(r.row, r.values["sku"]) for r in rows] == [(2, "A"), (5, "B"), (6, "C"), (7, "D")]
    assert rows[0].values["name"] == "two\nlines"


def test_leading_blank_lines_before_the_header_are_counted():
    _, rows = read(io.BytesIO(b"\n\nsku\nA\n"), "p.csv", mode="delete")
    assert rows[0].row == 4


@pytest.mark.parametrize("write", [write_xlsx, write_xls, write_ods])
def test_workbook_row_numbers_skip_blank_rows(tmp_path, write):
    path = write(tmp_path / f"p.{write.__name__[6:]}", [["sku"], ["A"], [None], ["B"]])
    source, rows = read(path, mode="delete")
    assert [(r.row, r.values) for r in rows] == [(2, {"sku": "A"}), (4, {"sku": "B"})]
    assert source.total_rows == 3


def test_workbook_header_below_blank_rows_keeps_sheet_row_numbers(tmp_path):
    # Pins python-calamine's iter_rows(), which yields the blank rows above
    # the used range: the numbers must be the ones the sheet shows.
    path = write_xlsx(tmp_path / "p.xlsx", [[None, "sku", "name"], [None, "A", "Saw"]], start_row=3)
    source, rows = read(path, mode="update")
    assert source.headers == ["sku", "name"]
    assert [(r.row, r.values) for r in rows] == [(4, {"sku": "A", "name": "Saw"})]
    assert source.total_rows == 1


def test_ragged_row_gets_a_row_error():
    data = b"sku,name,price,quantity,active\nA,B,1,2,1\nC,D,1,2,1,x,y\nE,F\nG,H,1,2,1,,,\n"
    _, rows = read(io.BytesIO(data), "p.csv", mode="update")
    assert rows[1].row == 3
    assert rows[1].errors == {
        "non_field_errors": ["Row 3 has 7 cells but the header has 5 columns."]
    }
    assert rows[1].values == {"sku": "C", "name": "D", "price": "1", "quantity": "2", "active": "1"}
    assert rows[2].errors is None and rows[2].values == {"sku": "E", "name": "F"}
    assert rows[3].errors is None  # trailing empty cells are not extra cells


# Bounds -------------------------------------------------------------------


def test_a_50_mb_line_fails_fast_in_bounded_memory(tmp_path):
    path = tmp_path / "long.csv"
    with path.open("wb") as out:
        out.write(b"sku,name\nA,")
        for _ in range(50):
            out.write(b"x" * MiB)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(UnreadableFile) as caught:
            read(path, mode="update")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.message == (
        "Row 2 is longer than 1048576 characters; check for a quote that is never closed, "
        "or split the long cells."
    )
    assert peak < 16 * MiB
    assert time.perf_counter() - started < 10


def test_a_record_of_endless_quoted_lines_fails_in_bounded_memory(tmp_path):
    path = tmp_path / "open.csv"
    with path.open("wb") as out:
        out.write(b"sku,name\n")
        for _ in range(20):
            out.write(b'"x\ny",' * 150_000)  # one record, no cell near the limit
    tracemalloc.start()
    try:
        with pytest.raises(UnreadableFile, match=r"^Row 2 is longer than 1048576 characters"):
            read(path, mode="update")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MiB


def test_an_unclosed_quote_is_bounded_by_the_row_limit(settings):
    settings.BULKOPS = {"MAX_CELL_CHARS": 1000}
    data = b'sku,name\nA,"never closed\n' + b"B,x\n" * 1000
    with pytest.raises(UnreadableFile, match=r"^Row 2 is longer than 1000 characters"):
        read(io.BytesIO(data), "p.csv", mode="update")


class _Longer(Exception):
    pass


def records_line_by_line(text: str, limit: int) -> tuple[list[list[str]], int | None]:
    """What ``csv`` reads from ``text`` one line at a time (lines as ``newline=""``
    ends them), with the bound counted line by line: the records before the first one
    longer than ``limit`` characters, and that record's row (``None``: none is)."""
    used = 0

    def lines():
        nonlocal used
        for line in io.StringIO(text, newline=""):
            used += len(line)
            if used > limit:
                raise _Longer
            yield line

    reader = csv.reader(lines())
    records: list[list[str]] = []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return records, None
        except _Longer:
            return records, len(records) + 1
        records.append(cells)
        used = 0


@settings(max_examples=400, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(["a", "é", ",", '"', " ", "\n", "\r", "\r\n"]), max_size=80),
    limit=st.integers(1, 40),
    block=st.sampled_from([1, 2, 3, 5, 8, 64 * 1024]),
)
def test_records_read_in_blocks_are_the_line_by_line_records(pieces, limit, block):
    text = "".join(pieces)
    expected, too_long_row = records_line_by_line(text, limit)
    read_block = text_reader.READ_BLOCK
    text_reader.READ_BLOCK = block
    records: list[list[str]] = []
    failed = None
    try:
        with override_settings(BULKOPS={"MAX_CELL_CHARS": limit}):
            rows, stream = text_reader.read_records(io.BytesIO(text.encode()), delimiter=",")
            try:
                records.extend(cells for _, cells in rows)
            finally:
                stream.close()
    except UnreadableFile as exc:
        assert exc.code == "row_too_long"
        failed = exc.extra["row"]
    finally:
        text_reader.READ_BLOCK = read_block
    assert (records, failed) == (expected, too_long_row)


def test_too_many_columns_is_refused():
    header = ",".join(f"c{i}" for i in range(20_000)).encode()
    with pytest.raises(UnreadableFile) as caught:
        read(io.BytesIO(header + b"\n"), "p.csv")
    assert caught.value.code == "too_many_columns"
    assert caught.value.message == (
        "The header has 20000 columns, more than the limit of 1000; "
        "remove the columns the import does not need."
    )


def test_too_many_rows_stops_the_stream(settings):
    settings.BULKOPS = {"MAX_ROWS": 3}
    data = b"sku\n" + b"".join(b"A%d\n\n" % i for i in range(5))
    source = open_rows(io.BytesIO(data), "p.csv", serializer=ProductSerializer(), mode="delete")
    seen = []
    with pytest.raises(FileLimitExceeded) as caught, source:
        for row in source:
            seen.append(row.row)
    assert seen == [2, 4, 6]
    assert caught.value.message == (
        "The file has more than 3 rows, the most one import may hold; split it into smaller files."
    )
    assert isinstance(caught.value, LimitExceeded) and isinstance(caught.value, UnreadableFile)


def test_too_many_rows_in_a_workbook_fails_at_open(settings, tmp_path):
    settings.BULKOPS = {"MAX_ROWS": 3}
    path = write_xlsx(tmp_path / "p.xlsx", [["sku"]] + [[f"A{i}"] for i in range(4)])
    with pytest.raises(FileLimitExceeded, match="has 4 rows below the header"):
        open_rows(path, serializer=ProductSerializer(), mode="delete")


def test_too_large_upload_is_refused_before_reading(settings):
    settings.BULKOPS = {"MAX_UPLOAD_BYTES": 10}
    with pytest.raises(FileLimitExceeded) as caught:
        read(io.BytesIO(b"sku\n" + b"A\n" * 10), "p.csv", mode="delete")
    assert caught.value.message == (
        "The file is 24 bytes, more than the limit of 10 bytes; split it into smaller files."
    )
    assert caught.value.extra == {"limit": 10, "received": 24}


def test_csv_streams_in_bounded_memory(tmp_path):
    path = tmp_path / "big.csv"
    with path.open("w") as out:
        out.write("sku,name,category,price,quantity\n")
        for i in range(200_000):
            out.write(f"SKU-{i:07d},Product number {i},Category {i % 50},{i % 1000}.99,{i}\n")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        count = 0
        with open_rows(path, serializer=ProductSerializer()) as source:
            for row in source:
                count += 1
                last = row
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert last.row == 200_001 and last.values["sku"] == "SKU-0199999"
    assert size > 10 * MiB
    assert peak < 2 * MiB


# Empty and broken files -----------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\n\n\r\n", b",,,\n,\n", b"\xef\xbb\xbf"])
def test_empty_text_file(data):
    with pytest.raises(UnreadableFile) as caught:
        read(io.BytesIO(data), "p.csv")
    assert caught.value.message == "The file is empty; the first row must hold the column names."
    assert caught.value.code == "empty_file"


@pytest.mark.parametrize("write", [write_xlsx, write_xls, write_ods])
def test_empty_workbook(tmp_path, write):
    path = write(tmp_path / f"p.{write.__name__[6:]}", [])
    with pytest.raises(UnreadableFile) as caught:
        read(path)
    assert caught.value.code == "empty_file"
    assert "is empty; its first row must hold the column names" in caught.value.message


@pytest.mark.parametrize("extension", ["xlsx", "xls", "ods"])
def test_random_bytes_named_as_a_workbook(extension):
    data = bytes(range(256)) * 64
    with pytest.raises(UnreadableFile) as caught:
        read(io.BytesIO(data), f"p.{extension}")
    assert caught.value.message.startswith(
        f"This file is not a readable {extension.upper()} workbook: "
    )


def test_csv_renamed_to_xlsx():
    with pytest.raises(UnreadableFile) as caught:
        read(io.BytesIO(b"sku,name\nA,B\n"), "p.xlsx")
    assert caught.value.message == (
        "This file is not a readable XLSX workbook: it is not a zip archive, as every .xlsx "
        "and .ods file is; open it in a spreadsheet program and save it again as .xlsx."
    )


def test_xlsx_renamed_to_csv(tmp_path):
    data = write_xlsx(tmp_path / "p.xlsx", [["sku"], ["A"]]).read_bytes()
    with pytest.raises(UnreadableFile) as caught:
        read(io.BytesIO(data), "p.csv")
    assert caught.value.code == "wrong_format"
    assert "give it its real extension" in caught.value.message


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9, 0.99])
def test_truncated_xlsx(tmp_path, keep):
    data = write_xlsx(tmp_path / "p.xlsx", [PRODUCT_HEADER, PRODUCT_ROW] * 50).read_bytes()
    with pytest.raises(UnreadableFile, match="^This file is not a readable XLSX workbook: "):
        read(io.BytesIO(data[: int(len(data) * keep)]), "p.xlsx")


def test_truncated_xls(tmp_path):
    data = write_xls(tmp_path / "p.xls", [PRODUCT_HEADER, PRODUCT_ROW] * 50).read_bytes()
    with pytest.raises(UnreadableFile, match="^This file is not a readable XLS workbook: "):
        read(io.BytesIO(data[: len(data) // 2]), "p.xls")


def _zip_with(part: str, size: int) -> bytes:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open(part, "w") as out,
    ):
        for _ in range(size // MiB):
            out.write(b"\0" * MiB)
    return buffer.getvalue()


def test_zip_bomb_by_compression_ratio():
    data = _zip_with("xl/worksheets/sheet1.xml", 8 * MiB)
    assert len(data) < 64 * 1024
    with pytest.raises(UnreadableFile) as caught:
        read(io.BytesIO(data), "p.xlsx")
    assert caught.value.code == "zip_bomb"
    assert caught.value.message.startswith(
        "Part 'xl/worksheets/sheet1.xml' of this XLSX file is compressed "
    )


def test_zip_bomb_by_declared_size(settings):
    settings.BULKOPS = {"MAX_UNPACKED_BYTES": 4 * MiB, "MAX_COMPRESSION_RATIO": 10**9}
    with pytest.raises(UnreadableFile) as caught:
        read(io.BytesIO(_zip_with("content.xml", 5 * MiB)), "p.ods")
    assert caught.value.message == (
        "This ODS file unpacks to 5.0 MiB, more than the limit of 4.0 MiB; "
        "it may be a zip bomb, so it was not opened."
    )


def test_zip_part_that_lies_about_its_size(tmp_path):
    data = bytearray(write_xlsx(tmp_path / "p.xlsx", [PRODUCT_HEADER, PRODUCT_ROW]).read_bytes())
    # Shrink the uncompressed size the central directory declares for the sheet.
    name = b"xl/worksheets/sheet1.xml"
    entry = data.index(b"PK\x01\x02")
    while data[entry + 46 : entry + 46 + len(name)] != name:
        entry = data.index(b"PK\x01\x02", entry + 4)
    struct.pack_into("<I", data, entry + 24, 10)
    with pytest.raises(UnreadableFile, match="^This file is not a readable XLSX workbook: "):
        read(io.BytesIO(bytes(data)), "p.xlsx")


@pytest.mark.parametrize(
    ("part", "padding"),
    [
        ("xl/worksheets/sheet1.xml", b""),
        ("xl/workbook.xml", b""),
        # Declared past a long comment: the whole part is scanned, not its start.
        ("xl/worksheets/sheet1.xml", b"<!-- " + os.urandom(MiB).hex().encode() + b" -->"),
    ],
    ids=["sheet", "workbook", "after-long-comment"],
)
def test_xml_entity_declarations_are_refused(tmp_path, part, padding):
    source = write_xlsx(tmp_path / "p.xlsx", [["sku", "name"], ["A", "B"]])
    with zipfile.ZipFile(source) as archive:
        original = archive.read(part)
    declaration = (
        b'<!DOCTYPE lol [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    )
    body = original.replace(b">B<", b">&b;<")
    xml = b'<?xml version="1.0" encoding="UTF-8"?>\n' + padding + declaration + body
    path = rezip(source, tmp_path / "evil.xlsx", {part: xml})
    with pytest.raises(UnreadableFile) as caught:
        read(path, mode="update")
    assert caught.value.code == "xml_entities"
    assert caught.value.message == (
        f"This XLSX file declares XML entities (<!DOCTYPE in '{part}'), which spreadsheet "
        "programs never write; it was not opened, to guard against entity expansion."
    )


# Sheets -------------------------------------------------------------------


def test_sheet_by_name_and_unknown_sheet(tmp_path):
    path = write_xlsx(tmp_path / "p.xlsx", [["sku"], ["A"]])
    book = openpyxl.load_workbook(path)
    second = book.create_sheet("Archive")
    second.append(["sku"])
    second.append(["OLD-1"])
    book.save(path)

    _, rows = read(path, mode="delete", sheet="archive")
    assert rows[0].values == {"sku": "OLD-1"}
    with pytest.raises(UnreadableFile) as caught:
        read(path, mode="delete", sheet="Prices")
    assert caught.value.message == (
        "The workbook has no sheet named 'Prices'; its sheets are: Products, Archive."
    )
    assert caught.value.code == "unknown_sheet"


def test_too_wide_sheet_is_refused(settings, tmp_path):
    settings.BULKOPS = {"MAX_COLUMNS": 5}
    path = write_xlsx(tmp_path / "p.xlsx", [["sku"] + [None] * 8 + ["stray"]])
    with pytest.raises(UnreadableFile, match="^The sheet 'Products' uses 10 columns"):
        read(path, mode="delete")


# JSON ---------------------------------------------------------------------


def test_json_items_map_keys_per_item():
    data = json.dumps(
        [
            {"SKU": "A", "price": "1.50", "_ref": "first"},
            {"sku": "B", "Colour": "red", "released": None},
            ["not", "an", "object"],
            {"sku": "C", "SKU": "D"},
        ]
    ).encode()
    source = open_rows(io.BytesIO(data), "p.json", serializer=ProductSerializer())
    assert source.headers == ["SKU", "price"]  # the first item's keys, known at open
    rows = list(source)
    assert [r.row for r in rows] == [1, 2, 3, 4]
    assert rows[0].values == {"sku": "A", "price": "1.50"} and rows[0].ref == "first"
    assert rows[1].values == {"sku": "B", "released": None}
    assert rows[2].errors == {
        "non_field_errors": ["Item 3 is a list, not an object of column values."]
    }
    assert rows[3].errors == {"non_field_errors": ["Item 4 has both 'sku' and 'SKU' for 'sku'."]}
    assert source.unknown_columns == ["Colour"]
    assert source.columns == {"SKU": "sku", "price": "price", "sku": "sku", "released": "released"}


def test_json_items_split_across_read_blocks_decode_exactly():
    items = [
        {"sku": f"S-{i}", "quantity": 10**12 + i, "price": i / 7, "active": i % 2 == 0}
        for i in range(20_000)
    ]
    data = json.dumps(items, indent=1).encode()
    _, rows = read(io.BytesIO(data), "p.json")
    assert [r.values for r in rows] == items


def test_empty_json_array_has_no_rows():
    source, rows = read(io.BytesIO(b"  [ ]  "), "p.json")
    assert rows == [] and source.headers == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The file is empty; it must hold a JSON array of objects."),
        (
            b'{"sku": "A"}',
            'The JSON file must hold an array of objects, like [{"sku": "A-1"}], '
            "but it starts with '{'.",
        ),
        (
            b'[{"sku": "A"}\n {"sku": "B"}]',
            "The JSON is malformed at line 2, column 2: expected ',' or ']' after item 1; "
            "fix it or export the file again.",
        ),
        (
            b'[{"sku": "A"},\n{"sku": "B",, "name": "x"}]',
            "The JSON is malformed at line 2, column 13: Expecting property name enclosed in "
            "double quotes; fix it or export the file again.",
        ),
        (
            b'[{"sku": "A"}',
            "The JSON is malformed at line 1, column 14: the array is never closed with ]; "
            "fix it or export the file again.",
        ),
        (
            b'[{"sku": "A"}] trailing',
            "The JSON is malformed at line 1, column 16: unexpected text after the closing ]; "
            "fix it or export the file again.",
        ),
        (
            b"[" * 100_000,
            "Item 1 of the JSON array is nested too deeply to read; "
            "items must be flat objects of column names and values.",
        ),
    ],
    ids=["empty", "object", "missing-comma", "double-comma", "unclosed", "trailing", "nested"],
)
def test_malformed_json_is_refused(data, message):
    with pytest.raises(UnreadableFile) as caught:
        read(io.BytesIO(data), "p.json")
    assert caught.value.message == message


def test_malformed_json_far_down_fails_while_streaming():
    data = b"[" + b'{"sku": "A"},' * 10_000 + b'{"sku": B}]'
    source = open_rows(io.BytesIO(data), "p.json", serializer=ProductSerializer())
    with pytest.raises(UnreadableFile, match="Expecting value"), source:
        assert sum(1 for _ in source) == 10_000


def test_json_item_size_is_bounded(settings):
    settings.BULKOPS = {"MAX_CELL_CHARS": 1000}
    data = b'[{"sku": "A"}, {"name": "' + b"x" * 5000 + b'"}]'
    source = open_rows(io.BytesIO(data), "p.json", serializer=ProductSerializer())
    with pytest.raises(UnreadableFile) as caught, source:
        list(source)
    assert caught.value.message == (
        "Item 2 of the JSON array is longer than 1000 characters; split its long values."
    )


def test_json_rows_limit(settings):
    settings.BULKOPS = {"MAX_ROWS": 2}
    source = open_rows(io.BytesIO(b"[{}, {}, {}]"), "p.json", serializer=ProductSerializer())
    with pytest.raises(FileLimitExceeded), source:
        list(source)


def test_json_streams_in_bounded_memory(tmp_path):
    path = tmp_path / "big.json"
    with path.open("w") as out:
        out.write("[")
        for i in range(100_000):
            item = {"sku": f"SKU-{i:07d}", "name": f"Product {i}", "price": f"{i}.99"}
            out.write(("," if i else "") + json.dumps(item) + "\n")
        out.write("]")
    tracemalloc.start()
    try:
        with open_rows(path, serializer=ProductSerializer()) as source:
            count = sum(1 for _ in source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert peak < 2 * MiB < path.stat().st_size
