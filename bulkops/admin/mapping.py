"""The column-mapping step: what a file's header row holds, and which field each column is.

``inspect_file`` reads only the header row and a few rows below it, through the
engine's own readers and its own header matching (``FieldIndex``,
``map_headers``), so a column matched here is matched the same way when the job
reads the whole file. ``suggest_mapping`` proposes a field for every column: the
engine's match, else the mapping staff confirmed before for the same headers,
else a choice made before for a column spelled the same way, else the closest
spelling of a field name or label, else "ignore".
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from rest_framework import serializers

from bulkops.conf import bulkops_settings
from bulkops.engine.readers import resolve_format
from bulkops.engine.readers.cells import is_empty
from bulkops.engine.readers.files import (
    OLE2_MAGIC,
    ZIP_MAGIC,
    check_upload_size,
    file_size,
    read_magic,
)
from bulkops.engine.readers.headers import (
    ID_FIELD,
    FieldIndex,
    HeaderMap,
    check_required_columns,
    column_letters,
    column_number,
    header_text,
    map_headers,
    normalise_header,
)
from bulkops.engine.readers.jsonarray import JsonArrayReader
from bulkops.engine.readers.spreadsheet import Workbook, check_zip
from bulkops.engine.readers.text import detect_encoding, open_text, read_records
from bulkops.errorfile import ERRORS_COLUMN, ROW_COLUMN
from bulkops.exceptions import MissingColumns, UnreadableFile

from .models import ColumnMapping, headers_signature
from .xlsxhead import read_head

SAMPLE_ROWS = 3
SAMPLE_CHARS = 60
# JSON objects may differ in their keys; the first few name the columns.
JSON_ITEMS_FOR_HEADERS = 20

_WORKBOOKS = ("xlsx", "xls", "ods")
_ENCRYPTION_INFO = "EncryptionInfo".encode("utf-16-le")


@dataclass
class Column:
    """One column of the file's header row, as the mapping step shows it."""

    position: int
    header: str
    label: str  # "B" in a workbook, "2" in a text file
    samples: list[str] = field(default_factory=list)
    matched: str | None = None  # the field the engine matches by name or label
    suggested: str | None = None  # the field proposed (matched, remembered or close)
    reason: str = ""  # why: "name", "remembered", "used before", "similar", ""


#: Columns of the failed-rows file (bulkops.errorfile) that a re-upload ignores silently.
ERROR_FILE_COLUMNS = (ROW_COLUMN, ERRORS_COLUMN)


def ignored_silently(header: str, matched: str | None) -> bool:
    """A ``row`` or ``errors`` column that matches no field: the failed-rows file's own."""
    return matched is None and normalise_header(header) in ERROR_FILE_COLUMNS


@dataclass
class FilePreview:
    """The header row of an upload and a few values under each column."""

    format: str
    sheet: str | None
    columns: list[Column]
    data_rows: int  # non-blank rows seen below the header (at most SAMPLE_ROWS + 1)
    total_rows: int | None  # rows below the header when the format knows (workbooks)

    @property
    def headers(self) -> list[str]:
        return [column.header for column in self.columns]

    @property
    def unmatched(self) -> list[Column]:
        return [
            column
            for column in self.columns
            if column.matched is None and not ignored_silently(column.header, None)
        ]


def inspect_file(
    fileobj: IO[bytes],
    filename: str,
    *,
    serializer: serializers.Serializer,
    sheet: str | None = None,
) -> FilePreview:
    """Read the header row and the first rows of an upload; nothing else.

    Raises ``UnreadableFile`` with the engine's sentence for a file it would
    refuse as a whole (type, size, damage, zip bomb, duplicate columns), and for
    a file with no row below its header.
    """
    fmt = resolve_format(filename, None)
    check_upload_size(file_size(fileobj))
    index = FieldIndex(serializer)
    total_rows = None
    sheet_name = None
    if fmt in _WORKBOOKS:
        refuse_encrypted(fileobj)
        workbook = Workbook(fileobj, fmt=fmt, sheet=sheet)
        try:
            sheet_name = workbook.sheet_name
            header_row, cells, samples = _head(workbook.records())
            if header_row is not None:
                total_rows = workbook.last_row - header_row
            label = workbook.column_label
        finally:
            workbook.close()
    elif fmt == "json":
        cells, samples = _json_head(fileobj)
        label = column_number
    else:
        records, text = read_records(
            fileobj,
            delimiter="\t" if fmt == "tsv" else None,
            kind="TSV" if fmt == "tsv" else "CSV",
        )
        try:
            _, cells, samples = _head(records)
        finally:
            text.close()
        label = column_number
    fileobj.seek(0)
    if cells is None:
        where = f"The sheet '{sheet_name}'" if sheet_name else "The file"
        raise UnreadableFile(
            f"{where} is empty; its first row must hold the column names.", code="empty_file"
        )
    header_map = map_headers(cells, index, column_label=label)
    if not samples:
        raise UnreadableFile(
            "The file has column names but no rows below them; add the rows to import.",
            code="no_rows",
        )
    columns = []
    for position, header in enumerate(header_map.headers):
        if not header.strip():
            continue
        values = [_sample_text(row[position]) if position < len(row) else "" for row in samples]
        columns.append(
            Column(
                position=position,
                header=header,
                label=label(position),
                samples=[value for value in values if value][:SAMPLE_ROWS],
                matched=index.match(header),
            )
        )
    return FilePreview(
        format=fmt,
        sheet=sheet_name,
        columns=columns,
        data_rows=len(samples),
        total_rows=total_rows,
    )


def quick_header(
    fileobj: IO[bytes],
    filename: str,
    *,
    serializer: serializers.Serializer,
    sheet: str | None = None,
) -> list[str] | None:
    """The header row when it can be had without decoding the file and every column in
    it matches a field (or is ignored silently); ``None`` when the caller must
    ``inspect_file`` (another format, a column to map, anything unusual).

    Raises ``UnreadableFile`` for what it finds wrong on the way, with the engine's
    sentences: a password, a zip bomb, duplicate columns, no rows, too many rows.
    """
    fmt = resolve_format(filename, None)
    if fmt != "xlsx":
        return None
    check_upload_size(file_size(fileobj))
    refuse_encrypted(fileobj)
    if read_magic(fileobj, 4) != ZIP_MAGIC:
        return None  # the full reader says what is wrong with it
    check_zip(fileobj, fmt)
    head = read_head(fileobj, sheet=sheet)
    if head is None:
        return None
    limit = bulkops_settings.MAX_COLUMNS
    if len(head.header) > limit:
        return None
    if head.last_row is not None and head.last_row - 1 > bulkops_settings.MAX_ROWS:
        return None  # the full reader refuses it with the sheet's name and row count
    header_map = map_headers(head.header, FieldIndex(serializer), column_label=column_letters)
    if not head.has_rows:
        raise UnreadableFile(
            "The file has column names but no rows below them; add the rows to import.",
            code="no_rows",
        )
    if any(not ignored_silently(h, None) for h in header_map.unknown_columns):
        return None
    return header_map.headers


def refuse_encrypted(fileobj: IO[bytes]) -> None:
    """Refuse a password-protected Office workbook with a sentence that says so.

    Excel saves an encrypted .xlsx as an OLE2 container holding an
    ``EncryptionInfo`` stream; without this check it reads as "not a zip archive".
    """
    if read_magic(fileobj, 8) != OLE2_MAGIC:
        return
    tail = b""
    try:
        while block := fileobj.read(1024 * 1024):
            if _ENCRYPTION_INFO in tail + block:
                raise UnreadableFile(
                    "This workbook is protected with a password, so it cannot be read; open "
                    "it, remove the password, save it and upload it again.",
                    code="encrypted_workbook",
                )
            tail = block[-len(_ENCRYPTION_INFO) :]
    finally:
        fileobj.seek(0)


def _head(records: Iterator[tuple[int, list[Any]]]) -> tuple[int | None, Any, list[list[Any]]]:
    """The header row (the first non-blank one, as the engine takes it) and the
    first non-blank rows below it."""
    header_row = None
    header: list[Any] | None = None
    samples: list[list[Any]] = []
    for row_number, cells in records:
        if all(map(is_empty, cells)):
            continue
        if header is None:
            header_row, header = row_number, cells
            limit = bulkops_settings.MAX_COLUMNS
            width = len(cells)
            while width and is_empty(cells[width - 1]):
                width -= 1
            if width > limit:
                raise UnreadableFile(
                    f"The header has {width} columns, more than the limit of {limit}; "
                    "remove the columns the import does not need.",
                    code="too_many_columns",
                )
            header = cells[:width]
            continue
        samples.append(cells)
        if len(samples) >= SAMPLE_ROWS:
            break
    return header_row, header, samples


def _json_head(fileobj: IO[bytes]) -> tuple[list[str] | None, list[list[Any]]]:
    text = open_text(fileobj, detect_encoding(fileobj, kind="JSON"))
    try:
        reader = JsonArrayReader(text, max_chars=bulkops_settings.MAX_CELL_CHARS)
        reader.start()
        items = [item for _, item in itertools.islice(reader.items(), JSON_ITEMS_FOR_HEADERS)]
    finally:
        text.close()
    keys: list[str] = []
    for item in items:
        if isinstance(item, dict):
            keys.extend(key for key in item if key not in keys)
    if not items:
        return None, []
    if not keys:
        raise UnreadableFile(
            "The JSON array holds no objects with named values; each item must be an object "
            'such as {"sku": "A-1", "price": "9.99"}.',
            code="no_columns",
        )
    rows = [
        [item.get(key) if isinstance(item, dict) else None for key in keys]
        for item in items[:SAMPLE_ROWS]
    ]
    return keys, rows


def _sample_text(value: Any) -> str:
    if is_empty(value):
        return ""
    text = header_text(value) if not isinstance(value, str) else value
    text = " ".join(text.split())
    if len(text) > SAMPLE_CHARS:
        text = text[: SAMPLE_CHARS - 1] + "…"
    return text


# -- suggestions ----------------------------------------------------------------


def field_choices(serializer: serializers.Serializer, *, with_id: bool) -> list[tuple[str, str]]:
    """``(field name, "name — Label")`` for every column the import accepts."""
    index = FieldIndex(serializer)
    choices = []
    for name, f in index.fields.items():
        if name == ID_FIELD and not with_id:
            continue
        label = str(f.label) if f.label else ""
        shown = (
            name
            if not label or normalise_header(label) == normalise_header(name)
            else (f"{name} — {label}")
        )
        choices.append((name, shown))
    return choices


def remembered_mapping(model_label: str, headers: Sequence[str]) -> ColumnMapping | None:
    """The mapping confirmed before for exactly these headers, if any."""
    return (
        ColumnMapping.objects.filter(model=model_label, signature=headers_signature(headers))
        .select_related("user")
        .first()
    )


def _choices_used_before(model_label: str, limit: int = 50) -> dict[str, str | None]:
    """normalised header -> the field chosen for it most recently, over recent mappings."""
    used: dict[str, str | None] = {}
    recent = ColumnMapping.objects.filter(model=model_label).order_by("-updated_at")[:limit]
    for mapping in recent:
        for header, name in mapping.mapping.items():
            used.setdefault(normalise_header(header), name)
    return used


def suggest_mapping(
    preview: FilePreview,
    serializer: serializers.Serializer,
    *,
    model_label: str,
    with_id: bool,
) -> ColumnMapping | None:
    """Fill in ``suggested``/``reason`` on every column; return the remembered mapping used."""
    index = FieldIndex(serializer)
    accepted = {name for name, _ in field_choices(serializer, with_id=with_id)}
    remembered = remembered_mapping(model_label, preview.headers)
    taken = {column.matched for column in preview.columns if column.matched}
    used_before: dict[str, str | None] | None = None
    # Close spellings are looked for among field names and labels alike.
    spellings: dict[str, str] = {}
    for name, f in index.fields.items():
        if name not in accepted:
            continue
        spellings.setdefault(normalise_header(name), name)
        if f.label:
            spellings.setdefault(normalise_header(str(f.label)), name)
    # The signature ignores case and spacing, so look the remembered choices up the same way.
    remembered_choices = (
        {normalise_header(header): name for header, name in remembered.mapping.items()}
        if remembered is not None
        else {}
    )
    for column in preview.columns:
        if ignored_silently(column.header, column.matched):
            column.suggested, column.reason = None, "failed rows"
            continue
        if normalise_header(column.header) in remembered_choices:
            choice = remembered_choices[normalise_header(column.header)]
            if choice is None or choice in accepted:
                column.suggested, column.reason = choice, "remembered"
                continue
        if column.matched and column.matched in accepted:
            column.suggested, column.reason = column.matched, "name"
            continue
        if used_before is None:
            used_before = _choices_used_before(model_label)
        key = normalise_header(column.header)
        if key in used_before and (used_before[key] is None or used_before[key] in accepted):
            choice = used_before[key]
            if choice is None or choice not in taken:
                column.suggested, column.reason = choice, "used before"
                if choice:
                    taken.add(choice)
                continue
        close = difflib.get_close_matches(key, list(spellings), n=3, cutoff=0.6)
        close += [spelling for spelling in spellings if abbreviates(key, spelling)]
        candidates = [spellings[match] for match in close if spellings[match] not in taken]
        if candidates:
            column.suggested, column.reason = candidates[0], "similar"
            taken.add(candidates[0])
        else:
            column.suggested, column.reason = None, ""
    return remembered


def abbreviates(short: str, long: str) -> bool:
    """Is ``short`` an abbreviation of ``long`` ("qty" of "quantity", "desc" of
    "description"): same first letter, its letters in order within ``long``?"""
    short, long = short.replace(" ", ""), long.replace(" ", "")
    if len(short) < 2 or len(short) >= len(long) or short[0] != long[0]:
        return False
    letters = iter(long)
    return all(letter in letters for letter in short)


def check_mapping(
    headers: Sequence[str],
    mapping: dict[str, str | None],
    serializer: serializers.Serializer,
    *,
    mode: str,
    natural_key: Sequence[str],
) -> None:
    """Refuse a mapping that leaves a column the mode needs unmapped, with the engine's
    own sentence (``MissingColumns``), or maps two columns to one field."""
    by_field: dict[str, list[str]] = {}
    for header in headers:
        name = mapping.get(header)
        if name:
            by_field.setdefault(name, []).append(header)
    clashes = [(name, found) for name, found in by_field.items() if len(found) > 1]
    if clashes:
        name, found = clashes[0]
        spelled = " and ".join(f"'{header}'" for header in found)
        raise UnreadableFile(
            f"Columns {spelled} are both mapped to the field '{name}'; map one of them to "
            "another field or ignore it.",
            code="duplicate_columns",
        )
    header_map = HeaderMap(
        headers=list(headers),
        columns={header: name for header, name in mapping.items() if name},
    )
    check_required_columns(
        header_map, FieldIndex(serializer), mode=mode, natural_key=tuple(natural_key)
    )


def remember_mapping(
    *, model_label: str, headers: Sequence[str], mapping: dict[str, str | None], user: Any
) -> ColumnMapping:
    """Store (or refresh) the confirmed mapping for these headers."""
    from django.utils import timezone

    record, _ = ColumnMapping.objects.update_or_create(
        model=model_label,
        signature=headers_signature(headers),
        defaults={
            "headers": list(headers),
            "mapping": {header: mapping.get(header) for header in headers},
            "user": user if getattr(user, "pk", None) else None,
            "updated_at": timezone.now(),
        },
    )
    return record


__all__ = [
    "Column",
    "FilePreview",
    "MissingColumns",
    "check_mapping",
    "column_letters",
    "field_choices",
    "inspect_file",
    "remember_mapping",
    "remembered_mapping",
    "suggest_mapping",
]
