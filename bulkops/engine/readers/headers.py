"""Header rows -> serializer fields.

A column matches a writable serializer field by the field's name or its label
(ModelSerializer takes labels from the model's ``verbose_name``), ignoring case,
surrounding spaces, and treating spaces, underscores and hyphens alike, so
"Unit Price", "unit_price" and "UNIT-PRICE" are one column. ``id`` is accepted
too, although read-only, because update and delete may name rows by it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rest_framework import serializers

from bulkops.exceptions import InvalidOptions, MissingColumns, UnreadableFile

ID_FIELD = "id"

_SEPARATORS = re.compile(r"[\s_\-]+")


def normalise_header(text: str) -> str:
    """The form two headers share when they name the same column."""
    return _SEPARATORS.sub(" ", text.casefold()).strip()


def column_number(index: int) -> str:
    """1-based column number, how a text editor user counts columns."""
    return str(index + 1)


def column_letters(index: int) -> str:
    """Spreadsheet column name for a 0-based index: 0 -> A, 27 -> AB."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def and_list(items: Sequence[str]) -> str:
    """a, b and c — for messages."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def quoted_list(names: Sequence[str]) -> str:
    """'a', 'b' and 'c' — for messages that name columns."""
    return and_list([f"'{name}'" for name in names])


def found_list(headers: Sequence[str]) -> str:
    present = [header.strip() for header in headers if header.strip()]
    return ", ".join(present) if present else "no column names"


class FieldIndex:
    """The columns a serializer accepts, looked up by normalised header.

    Field names win over labels when both could match, so a label can never
    hide another field's own name.
    """

    def __init__(
        self,
        serializer: serializers.Serializer,
        column_map: Mapping[str, str | None] | None = None,
    ) -> None:
        all_fields = serializer.fields
        self.fields: dict[str, serializers.Field] = {
            name: f
            for name, f in all_fields.items()
            if not f.read_only and not isinstance(f, serializers.HiddenField)
        }
        self._by_key: dict[str, str] = {}
        for name in self.fields:
            self._by_key.setdefault(normalise_header(name), name)
        for name, f in self.fields.items():
            if f.label:
                self._by_key.setdefault(normalise_header(str(f.label)), name)
        # ``id`` is read-only on a ModelSerializer (or absent from it), yet it
        # is how update and delete rows may name their object.
        if ID_FIELD not in self.fields:
            self.fields[ID_FIELD] = all_fields.get(ID_FIELD) or serializers.IntegerField()
        self._by_key.setdefault(ID_FIELD, ID_FIELD)
        # A mapping chosen by a person (the admin's mapping step) wins over the
        # automatic matching: header -> field name, or None to ignore the column.
        column_map = column_map or {}
        wrong = sorted({name for name in column_map.values() if name and name not in self.fields})
        if wrong:
            raise InvalidOptions(
                f"The column map names {', '.join(repr(n) for n in wrong)}, which no column "
                f"can fill; the fields are: {', '.join(sorted(self.fields))}.",
                fields=sorted(self.fields),
            )
        self._chosen = {normalise_header(header): name for header, name in column_map.items()}

    def match(self, header: str) -> str | None:
        """The field name a header stands for, or ``None``."""
        key = normalise_header(header)
        if key in self._chosen:
            return self._chosen[key]
        return self._by_key.get(key)

    def required_names(self) -> list[str]:
        return [name for name, f in self.fields.items() if f.required and name != ID_FIELD]


@dataclass
class HeaderMap:
    """How the columns of a header row map to fields.

    ``positions`` pairs each mapped column's 0-based index with its field name,
    in file order; ``width`` is the header's length without trailing empty cells.
    """

    headers: list[str]
    columns: dict[str, str] = field(default_factory=dict)
    unknown_columns: list[str] = field(default_factory=list)
    positions: list[tuple[int, str]] = field(default_factory=list)

    @property
    def width(self) -> int:
        return len(self.headers)


def header_text(value: Any) -> str:
    """A header cell as text; spreadsheets may hold numbers or dates there."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def map_headers(
    cells: Sequence[Any],
    index: FieldIndex,
    *,
    column_label: Callable[[int], str] = column_number,
) -> HeaderMap:
    """Map one header row; refuse a row where two columns name the same field.

    Empty header cells are ignored (their column is skipped); trailing ones do
    not count towards the header's width.
    """
    headers = [header_text(cell) for cell in cells]
    while headers and not headers[-1].strip():
        headers.pop()
    result = HeaderMap(headers=headers)
    groups: dict[str, list[int]] = {}
    for position, header in enumerate(headers):
        if not header.strip():
            continue
        name = index.match(header)
        key = f"field:{name}" if name else f"header:{normalise_header(header)}"
        groups.setdefault(key, []).append(position)
        if name is None:
            result.unknown_columns.append(header)
        else:
            result.columns[header] = name
            result.positions.append((position, name))
    duplicates = [positions for positions in groups.values() if len(positions) > 1]
    if duplicates:
        raise UnreadableFile(
            _duplicates_message(headers, duplicates, column_label, index),
            code="duplicate_columns",
            duplicates=[[headers[p] for p in positions] for positions in duplicates],
        )
    return result


def _duplicates_message(
    headers: list[str],
    duplicates: list[list[int]],
    column_label: Callable[[int], str],
    index: FieldIndex,
) -> str:
    phrases = []
    for positions in duplicates:
        spellings = {headers[p].strip() for p in positions}
        if len(spellings) == 1:
            where = and_list([column_label(p) for p in positions])
            phrases.append(f"'{spellings.pop()}' is in columns {where}")
            continue
        spelled = [f"'{headers[p].strip()}' (column {column_label(p)})" for p in positions]
        joined = and_list(spelled)
        name = index.match(headers[positions[0]])
        target = f"the field '{name}'" if name else "the same column"
        phrases.append(f"{joined} {'both' if len(positions) == 2 else 'all'} name {target}")
    return (
        "Each column may appear only once, but "
        + "; ".join(phrases)
        + "; remove or rename the extra columns."
    )


def check_required_columns(
    header_map: HeaderMap,
    index: FieldIndex,
    *,
    mode: str,
    natural_key: Sequence[str],
) -> None:
    """Refuse a header that lacks a column every row of ``mode`` needs.

    create/upsert need every required writable field; upsert also the natural
    key; update/delete need ``id`` or every natural-key field.
    """
    present = set(header_map.columns.values())
    if mode in ("create", "upsert"):
        needed = index.required_names()
        if mode == "upsert":
            needed += [name for name in natural_key if name not in needed]
        missing = [name for name in needed if name not in present]
        if missing:
            noun = "Column" if len(missing) == 1 else "Columns"
            verb = "is" if len(missing) == 1 else "are"
            raise MissingColumns(
                f"{noun} {quoted_list(missing)} {verb} required; "
                f"the file has: {found_list(header_map.headers)}",
                missing=missing,
                found=[h for h in header_map.headers if h.strip()],
            )
        return
    if ID_FIELD in present or (natural_key and all(n in present for n in natural_key)):
        return
    if not natural_key:
        wanted = f"Column '{ID_FIELD}' is required"
        missing = [ID_FIELD]
    elif len(natural_key) == 1:
        wanted = f"Column '{ID_FIELD}' or '{natural_key[0]}' is required"
        missing = [ID_FIELD, natural_key[0]]
    else:
        wanted = f"Column '{ID_FIELD}', or columns {quoted_list(natural_key)}, must be present"
        missing = [ID_FIELD, *natural_key]
    raise MissingColumns(
        f"{wanted} to find the rows to {mode}; the file has: {found_list(header_map.headers)}",
        missing=missing,
        found=[h for h in header_map.headers if h.strip()],
    )
