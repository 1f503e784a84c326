"""The header row of an .xlsx file, read without decoding the sheet.

python-calamine decodes a whole sheet before giving its first row (about a second for
100,000 rows); the upload view needs only the header to decide whether the file goes
straight to its job or to the mapping step. This reads the sheet's XML as a stream,
stops after the header and the row below it, and resolves only the shared strings the
header uses. It runs after the engine's zip checks (``check_zip``: zip bombs, entity
declarations), and anything it does not understand makes it return ``None``, so the
caller falls back to the full reader. Only text matters here: the header's names.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from dataclasses import dataclass
from typing import IO, Any
from xml.etree.ElementTree import ParseError, iterparse

MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_REF = re.compile(r"^([A-Z]+)(\d+)$")


@dataclass
class SheetHead:
    header: list[str]
    has_rows: bool  # a non-blank row follows the header
    last_row: int | None  # from the sheet's <dimension>, when it has one


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - 64
    return index - 1


def _sheet_path(archive: zipfile.ZipFile, sheet: str | None) -> str | None:
    with archive.open("xl/workbook.xml") as part:
        sheets = [
            (element.get("name") or "", element.get(f"{REL}id"))
            for _, element in iterparse(part)
            if element.tag == f"{MAIN}sheet"
        ]
    if not sheets:
        return None
    if sheet is None:
        rel_id = sheets[0][1]
    else:
        wanted = sheet.strip().casefold()
        found = [rid for name, rid in sheets if name == sheet or name.strip().casefold() == wanted]
        if not found:
            return None
        rel_id = found[0]
    with archive.open("xl/_rels/workbook.xml.rels") as part:
        for _, element in iterparse(part):
            if element.tag == f"{PKG_REL}Relationship" and element.get("Id") == rel_id:
                target = element.get("Target") or ""
                if not target.endswith(".xml") or "worksheets/" not in target:
                    return None  # a chart sheet first: let the full reader pick
                if target.startswith("/"):
                    return target.lstrip("/")
                return posixpath.normpath(posixpath.join("xl", target))
    return None


def _shared_strings(archive: zipfile.ZipFile, needed: set[int]) -> dict[int, str] | None:
    if not needed:
        return {}
    try:
        part = archive.open("xl/sharedStrings.xml")
    except KeyError:
        return None
    found: dict[int, str] = {}
    last = max(needed)
    index = 0
    with part:
        for _, element in iterparse(part):
            if element.tag != f"{MAIN}si":
                continue
            if index in needed:
                # Plain text is one <t>; rich text is runs <r><t>; phonetic hints
                # (<rPh>) are not part of the text.
                runs = [element, *element.findall(f"{MAIN}r")]
                found[index] = "".join(
                    t.text or "" for run in runs for t in run.findall(f"{MAIN}t")
                )
            element.clear()
            if index >= last:
                break
            index += 1
    return found if len(found) == len(needed) else None


def _row_cells(row: Any, *, header: bool) -> list[tuple[int, str | None, str]]:
    """(column, type, raw text) of each cell holding something. A header cell of a type
    whose text this reader does not render as calamine does raises ``ValueError``."""
    cells = []
    for position, cell in enumerate(row.iter(f"{MAIN}c")):
        ref = cell.get("r")
        match = _REF.match(ref) if ref else None
        column = _column_index(match.group(1)) if match else position
        kind = cell.get("t")
        if header and kind not in (None, "n", "s", "str", "inlineStr"):
            raise ValueError(f"a {kind!r} cell: leave it to the full reader")
        if kind == "inlineStr":
            text = "".join(t.text or "" for t in cell.iter(f"{MAIN}t"))
        else:
            value = cell.find(f"{MAIN}v")
            text = value.text if value is not None and value.text is not None else ""
        if text.strip():
            cells.append((column, kind, text))
    return cells


def read_head(fileobj: IO[bytes], *, sheet: str | None = None) -> SheetHead | None:
    """The first non-blank row of the (first or named) worksheet, as text, or ``None``
    when this reader cannot tell (the caller then reads the file in full)."""
    fileobj.seek(0)
    try:
        with zipfile.ZipFile(fileobj) as archive:
            path = _sheet_path(archive, sheet)
            if path is None:
                return None
            header: list[tuple[int, str | None, str]] | None = None
            has_rows = False
            last_row = None
            with archive.open(path) as part:
                for _, element in iterparse(part):
                    if element.tag == f"{MAIN}dimension":
                        match = re.search(r"(\d+)$", element.get("ref") or "")
                        last_row = int(match.group(1)) if match else None
                    elif element.tag == f"{MAIN}row":
                        cells = _row_cells(element, header=header is None)
                        element.clear()
                        if not cells:
                            continue
                        if header is None:
                            header = cells
                            continue
                        has_rows = True
                        break
            if header is None:
                return None
            needed = {int(text) for _, kind, text in header if kind == "s" and text.isdigit()}
            strings = _shared_strings(archive, needed)
            if strings is None:
                return None
            if any(kind == "s" and not text.isdigit() for _, kind, text in header):
                return None
            width = max(column for column, _, _ in header) + 1
            row = [""] * width
            for column, kind, text in header:
                row[column] = strings[int(text)] if kind == "s" else text
            return SheetHead(header=row, has_rows=has_rows, last_row=last_row)
    except (zipfile.BadZipFile, KeyError, ParseError, OSError, ValueError, EOFError):
        return None
    finally:
        fileobj.seek(0)
