"""Workbooks (XLSX, XLS, ODS) -> records, through python-calamine.

Before calamine sees a zip-based workbook (XLSX, ODS), its archive is checked
with ``zipfile``: the declared unpacked size and each part's compression ratio
must stay within ``MAX_UNPACKED_BYTES`` / ``MAX_COMPRESSION_RATIO`` (zip
bombs), and the XML parts are unpacked once in blocks to confirm those
declared sizes (a part whose data does not match its checksum is refused) and
to refuse any ``<!DOCTYPE``/``<!ENTITY`` declaration (entity expansion;
spreadsheet programs never write one). Only then does calamine decode the
sheet, whose size is checked against ``MAX_ROWS``/``MAX_COLUMNS`` before any
row becomes Python objects.

Formula cells give the value the workbook saved with them; error cells
(``#DIV/0!``) come out of calamine empty, so they count as "no value".
"""

from __future__ import annotations

import contextlib
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

import python_calamine

from bulkops.conf import bulkops_settings
from bulkops.exceptions import UnreadableFile

from .files import OLE2_MAGIC, ZIP_MAGIC, FileLimitExceeded, describe_size, read_magic
from .headers import column_letters

T = TypeVar("T")

SCAN_BLOCK = 1024 * 1024
# Parts smaller than this cannot hurt, whatever their ratio; legitimately tiny
# parts (an all-blank styles.xml) compress far beyond any sane ratio.
RATIO_FLOOR = 1024 * 1024
XML_SUFFIXES = (".xml", ".rels")
DECLARATIONS = (b"<!DOCTYPE", b"<!ENTITY")

Record = tuple[int, list[Any]]


def not_readable(fmt: str, reason: str) -> UnreadableFile:
    return UnreadableFile(
        f"This file is not a readable {fmt.upper()} workbook: {reason}; "
        f"open it in a spreadsheet program and save it again as .{fmt}.",
        code="unreadable_workbook",
    )


def _calamine(fmt: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001
        # calamine reports broken files as CalamineError, but a malformed part
        # can also surface as a Rust panic (pyo3's PanicException, which
        # derives from BaseException); a broken upload must never crash a
        # worker.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise not_readable(fmt, reason.rstrip(".")) from exc


def check_zip(fileobj: IO[bytes], fmt: str) -> None:
    """Refuse a zip bomb or XML with entity declarations (see module docstring)."""
    max_unpacked = bulkops_settings.MAX_UNPACKED_BYTES
    max_ratio = bulkops_settings.MAX_COMPRESSION_RATIO
    label = fmt.upper()
    fileobj.seek(0)
    try:
        with zipfile.ZipFile(fileobj) as archive:
            members = archive.infolist()
            declared = sum(member.file_size for member in members)
            if declared > max_unpacked:
                raise UnreadableFile(
                    f"This {label} file unpacks to {describe_size(declared)}, more than the "
                    f"limit of {describe_size(max_unpacked)}; it may be a zip bomb, so it was "
                    "not opened.",
                    code="zip_bomb",
                )
            for member in members:
                ratio = member.file_size / max(member.compress_size, 1)
                if member.file_size > RATIO_FLOOR and ratio > max_ratio:
                    raise UnreadableFile(
                        f"Part '{member.filename}' of this {label} file is compressed "
                        f"{ratio:.0f} times, more than the {max_ratio} allowed; it may be a "
                        "zip bomb, so it was not opened.",
                        code="zip_bomb",
                    )
            for member in members:
                if member.filename.lower().endswith(XML_SUFFIXES):
                    _scan_xml_part(archive, member, label)
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise not_readable(fmt, f"its zip archive is damaged ({exc})") from exc
    finally:
        fileobj.seek(0)


def _scan_xml_part(archive: zipfile.ZipFile, member: zipfile.ZipInfo, label: str) -> None:
    # zipfile stops at the declared size and checks the CRC at the end, so a
    # part that lies about its size fails here instead of inflating in calamine.
    tail = b""
    with archive.open(member) as part:
        while block := part.read(SCAN_BLOCK):
            window = tail + block
            for declaration in DECLARATIONS:
                if declaration in window:
                    raise UnreadableFile(
                        f"This {label} file declares XML entities ({declaration.decode()} in "
                        f"'{member.filename}'), which spreadsheet programs never write; it was "
                        "not opened, to guard against entity expansion.",
                        code="xml_entities",
                    )
            # Keep enough of the end to find a declaration split between blocks.
            tail = block[-16:]


class Workbook:
    """One sheet of a workbook, ready to be read as records."""

    def __init__(self, fileobj: IO[bytes], *, fmt: str, sheet: str | None) -> None:
        magic = read_magic(fileobj, 8)
        if magic.startswith(ZIP_MAGIC):
            check_zip(fileobj, fmt)
        elif fmt in ("xlsx", "ods"):
            raise not_readable(fmt, "it is not a zip archive, as every .xlsx and .ods file is")
        elif not magic.startswith(OLE2_MAGIC):
            raise not_readable(fmt, "it does not start like an Excel 97-2003 workbook")
        fileobj.seek(0)
        book = _calamine(fmt, lambda: python_calamine.CalamineWorkbook.from_filelike(fileobj))
        self._book: python_calamine.CalamineWorkbook | None = book
        try:
            self.sheet_name = name = self._pick_sheet(book, sheet)
            self._sheet = _calamine(fmt, lambda: book.get_sheet_by_name(name))
            self._check_size()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _pick_sheet(book: python_calamine.CalamineWorkbook, wanted: str | None) -> str:
        names = list(book.sheet_names)
        if not names:
            raise UnreadableFile("The workbook has no sheets.", code="empty_file")
        if wanted is None:
            # The first worksheet; a chart sheet in front holds no rows.
            for meta in book.sheets_metadata:
                if meta.typ == python_calamine.SheetTypeEnum.WorkSheet:
                    return meta.name
            return names[0]
        if wanted in names:
            return wanted
        folded = {name.strip().casefold(): name for name in names}
        if wanted.strip().casefold() in folded:
            return folded[wanted.strip().casefold()]
        raise UnreadableFile(
            f"The workbook has no sheet named '{wanted}'; its sheets are: {', '.join(names)}.",
            code="unknown_sheet",
            sheets=names,
        )

    def _check_size(self) -> None:
        sheet = self._sheet
        if sheet.height == 0 or sheet.start is None or sheet.end is None:
            raise UnreadableFile(
                f"The sheet '{self.sheet_name}' is empty; its first row must hold the "
                "column names.",
                code="empty_file",
            )
        max_columns = bulkops_settings.MAX_COLUMNS
        if sheet.width > max_columns:
            raise UnreadableFile(
                f"The sheet '{self.sheet_name}' uses {sheet.width} columns, more than the "
                f"limit of {max_columns}; delete the unused columns on its right.",
                code="too_many_columns",
                limit=max_columns,
                received=sheet.width,
            )
        max_rows = bulkops_settings.MAX_ROWS
        # The header takes one of the rows.
        if sheet.height - 1 > max_rows:
            raise FileLimitExceeded(
                f"The sheet '{self.sheet_name}' has {sheet.height - 1} rows below the "
                f"header, more than the limit of {max_rows}; split it into smaller files.",
                code="too_many_rows",
                limit=max_rows,
                received=sheet.height - 1,
            )
        self._start, self._end = sheet.start, sheet.end

    @property
    def last_row(self) -> int:
        """The 1-based number of the sheet's last used row."""
        return self._end[0] + 1

    def column_label(self, index: int) -> str:
        """The letter of the ``index``-th cell of a record (records start at the
        sheet's first used column)."""
        return column_letters(self._start[1] + index)

    def records(self) -> Iterator[Record]:
        # python-calamine's iter_rows() yields the blank rows above the used
        # range too, so enumerating from 1 gives the sheet's own row numbers
        # (tests/engine/test_readers.py pins this).
        return enumerate(self._sheet.iter_rows(), start=1)

    def close(self) -> None:
        book, self._book = self._book, None
        if book is not None:
            with contextlib.suppress(python_calamine.CalamineError):
                book.close()
