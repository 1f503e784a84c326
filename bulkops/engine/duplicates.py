"""Rows of one batch that clash with each other: one key, several rows.

Each validated chunk records its rows' batch keys (``StagedChunk.keys``: per
constraint, ``[key_text, position]``, plus the naming field for ``target``). Rows
sharing a key of one constraint are a duplicate group; ``name_duplicates`` words
their errors — the first row names every other, each other row names the first —
whoever gathered the keys: ``DuplicateIndex`` here, in memory, for a batch run in
one process; a job's table of keys, for chunks validated by many workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import RowErrors, label_of, merged
from .staged import StagedChunk

SAME_OBJECT = "The same object is named by {} of this batch."


def name_duplicates(
    positions: Iterable[int],
    *,
    message: str,
    field_of: Callable[[int], str],
    is_file_row: bool,
) -> dict[int, RowErrors]:
    """``{position: {field: [messages]}}`` for rows sharing one key: the first (lowest)
    position gets ``message`` naming each other row, every other row one naming the
    first. ``message`` has a ``{}`` for the other row's label."""
    ordered = sorted(set(positions))
    if len(ordered) < 2:
        return {}
    first, *others = ordered
    errors = {
        first: {
            field_of(first): [message.format(label_of(p, is_file_row=is_file_row)) for p in others]
        }
    }
    named_first = [message.format(label_of(first, is_file_row=is_file_row))]
    for position in others:
        errors[position] = {field_of(position): list(named_first)}
    return errors


class DuplicateIndex:
    """Batch keys gathered in memory, chunk after chunk (``Batch.validate_chunk`` with
    ``track_duplicates=True``). Keeps one position per key until a second row has it,
    so a million-row batch costs one dict entry per row and constraint."""

    def __init__(
        self,
        *,
        order: list[str],
        name: Callable[[str, list[int], bool, Mapping[int, str]], dict[int, RowErrors]],
    ) -> None:
        self.order = {constraint: n for n, constraint in enumerate(order)}
        self.name = name  # Batch.duplicate_errors
        self.is_file_row = False
        self._first: dict[str, dict[str, int]] = {}
        self._groups: dict[tuple[str, str], list[int]] = {}
        self._member: dict[int, list[tuple[str, str]]] = {}
        self._fields: dict[int, str] = {}  # naming fields of target rows, other than the usual
        self._usual_field: str | None = None
        self._named: dict[tuple[str, str], dict[int, RowErrors]] = {}

    def __bool__(self) -> bool:
        return bool(self._groups)

    def add(self, keys: Mapping[str, list[list[Any]]], *, is_file_row: bool) -> None:
        """Take a chunk's keys (``Batch.chunk_keys``)."""
        self.is_file_row = is_file_row
        for constraint, entries in keys.items():
            first = self._first.setdefault(constraint, {})
            for entry in entries:
                key, position = entry[0], entry[1]
                if len(entry) > 2:
                    self._note_field(position, entry[2])
                seen = first.setdefault(key, position)
                if seen == position:
                    continue
                group = self._groups.get((constraint, key))
                if group is None:
                    group = self._groups[(constraint, key)] = [seen]
                    self._member.setdefault(seen, []).append((constraint, key))
                group.append(position)
                self._member.setdefault(position, []).append((constraint, key))
                self._named.pop((constraint, key), None)

    def _note_field(self, position: int, field: str) -> None:
        if self._usual_field is None:
            self._usual_field = field
        if field != self._usual_field:
            self._fields[position] = field

    def errors_for(self, chunk: StagedChunk) -> dict[int, RowErrors]:
        """The duplicate errors of this chunk's rows, against every chunk added."""
        out: dict[int, RowErrors] = {}
        for row in chunk.rows:
            position = row.position
            memberships = self._member.get(position)
            if not memberships:
                continue
            errors: RowErrors | None = None
            for group in sorted(memberships, key=lambda m: self.order.get(m[0], len(self.order))):
                named = self._named.get(group)
                if named is None:
                    named = self._named[group] = self._name(group)
                errors = merged(errors, named.get(position, {}))
            if errors:
                out[position] = errors
        return out

    def _name(self, group: tuple[str, str]) -> dict[int, RowErrors]:
        positions = self._groups[group]
        fields = _FieldsOf(self._fields, self._usual_field)
        return self.name(group[0], positions, self.is_file_row, fields)


class _FieldsOf(Mapping[int, str]):
    """The naming field of every target position: the usual one unless noted."""

    def __init__(self, noted: dict[int, str], usual: str | None) -> None:
        self.noted = noted
        self.usual = usual

    def __getitem__(self, position: int) -> str:
        field = self.noted.get(position, self.usual)
        if field is None:
            raise KeyError(position)
        return field

    def __iter__(self) -> Any:
        return iter(self.noted)

    def __len__(self) -> int:
        return len(self.noted)
