"""DRF's ``Serializer.to_internal_value`` for a whole chunk, a column at a time.

DRF validates a row by running every field's ``run_validation`` on it; a chunk of a
spreadsheet repeats most of that work (25 categories, a few hundred prices, ``true``
and ``false``, a few hundred dates in a thousand rows). Here each field is validated
over the chunk's column at once, with DRF's own field instance as the reference:

- ``distinct``: ``field.run_validation`` once per distinct value (keyed by type and
  value, so ``1``, ``True`` and ``1.0`` never share an outcome), the outcome reused for
  every equal cell;
- ``text``: a plain ``CharField`` column (str, length bounds, no NUL or lone surrogate,
  blank handling) checked whole; only the cells that fail go to DRF, for its message;
- ``integer`` / ``decimal``: ASCII digits (``-12``, ``0012.50``) turned into DRF's exact
  value without DRF's per-call overhead; anything else goes to DRF;
- ``per-row``: DRF's own per-row steps, in row order, for everything whose outcome
  may depend on more than the value: custom validators, ``validate_<field>``, a
  subclass overriding the validation methods, a callable default (for its missing
  cells only), unsupported field types. HTML/QueryDict and non-dict rows go to DRF's
  ``Serializer.to_internal_value`` whole.

The result of every row — validated dict (keys, order, values, types) or error detail
(keys, order, messages, codes) — is what DRF's per-row ``to_internal_value`` gives;
``tests/engine/test_columns.py`` checks it differentially. A fast path only ever
*accepts* a cell it can prove DRF accepts, with DRF's value; every other cell is
DRF's own outcome. Nothing is kept between chunks: each ``validate_columns`` call
starts from empty caches.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.fields import SkipField, empty, get_error_detail

from ..compat import WRITABLE_FIELDS
from . import serializer as engine_serializer
from .column_choice import column_for
from .column_strategies import DEFER, FAIL, SKIP, Column, Outcome
from .outcome import Noted, noted_list

__all__ = ["ColumnPlan", "ValidatedColumns"]


class ColumnPlan:
    """How one serializer instance's writable fields are validated a column at a time.

    Build it once per batch; then per chunk call ``validate_columns(rows)`` and ask the
    result for each row, or call ``to_internal_values(rows)`` for the whole list. Each
    field's strategy is decided again per chunk (a few attribute reads a field), so a
    validator or resolver the engine adds or removes later is honoured.
    """

    def __init__(self, serializer: serializers.Serializer) -> None:
        self.serializer = serializer
        klass = type(serializer)
        # A serializer with its own to_internal_value or set_value keeps it, per row.
        self.columnar = (
            klass.to_internal_value
            in (serializers.Serializer.to_internal_value, engine_serializer._to_internal_value)
            and klass.set_value is serializers.Serializer.set_value
            and isinstance(serializer, serializers.Serializer)
        )
        writable = list(getattr(serializer, WRITABLE_FIELDS)) if self.columnar else []
        self.fields = [(field.field_name, field.source_attrs, field) for field in writable]
        self.keys = [attrs[0] if attrs else None for _, attrs, _ in self.fields]
        self.flat = all(len(attrs) == 1 for _, attrs, _ in self.fields)

    @classmethod
    def for_serializer(cls, serializer: serializers.Serializer) -> ColumnPlan:
        return cls(serializer)

    def columns(self) -> list[Column]:
        return [column_for(self.serializer, field) for _, _, field in self.fields]

    @property
    def strategies(self) -> dict[str, str]:
        """Field name -> strategy ("text", "integer", "decimal", "distinct", "per-row")."""
        return {
            name: column.strategy
            for (name, _, _), column in zip(self.fields, self.columns(), strict=True)
        }

    def validate_columns(self, rows: Sequence[Any]) -> ValidatedColumns:
        """Validate every column-safe field over ``rows``; per-row work waits for the row."""
        rows = list(rows)
        if not self.columnar:
            return ValidatedColumns(self, rows, [], set(range(len(rows))), set())
        plain = set(map(type, rows)) == {dict}
        whole = (
            set()
            if plain
            else {
                index
                for index, row in enumerate(rows)
                if not isinstance(row, Mapping) or hasattr(row, "getlist")
            }
        )
        outs = []
        odd: set[int] = set(whole)
        slotted: list[tuple[int, tuple, list[bool]]] = []
        for k, ((name, _, _), column) in enumerate(zip(self.fields, self.columns(), strict=True)):
            if plain:
                try:  # every row has the key: the common case, at C speed
                    cells = list(map(operator.itemgetter(name), rows))
                except KeyError:
                    cells = [row.get(name, empty) for row in rows]
            else:
                cells = [
                    empty if i in whole else row.get(name, empty) for i, row in enumerate(rows)
                ]
            out, positions = column.values(cells)
            if column.slots:
                slotted.append((k, column.slots, _slots_reached(cells, out, positions)))
            odd.update(positions)
            outs.append(out)
        return ValidatedColumns(self, rows, outs, whole, odd, slotted)

    def to_internal_values(self, rows: Sequence[Any]) -> list[tuple[dict | None, Any]]:
        """Per row ``(validated, None)`` or ``(None, error_detail)``: what DRF's
        ``to_internal_value`` returns or raises (``ValidationError.detail``) for it.
        Any other exception escapes as it would from DRF, at the first row raising it."""
        return self.validate_columns(rows).outcomes()


def _note(noted: list, slots: tuple, value: Any) -> None:
    """Note a field's unique slots for a value every validator before them passed, as
    ``outcome.run_validators_noting`` notes them (a field's slot: no object to compare)."""
    for slot in slots:
        check = slot.check
        if check.plain:
            key = None if value is None else (value,)
        else:
            key = check.key_of_noted(value, None)
        noted.append(Noted(slot, key, 0))


def _slots_reached(cells: list, out: list, positions: list[int]) -> list[bool]:
    """Which accepted cells of a slotted column reached the field's validators (and so
    note its unique slots). A refused cell, or an accepted ``''`` whose path is not known
    (DRF's blank shortcut skips the validators), runs the field per row instead."""
    reached = []
    for i, (cell, value) in enumerate(zip(cells, out, strict=True)):
        if type(value) is Outcome:
            if value.kind == FAIL:
                out[i] = DEFER  # the field's own run notes the slots where DRF stops
            reached.append(False)
        elif cell is empty or cell is None:
            reached.append(False)  # validate_empty_values answered: no validators ran
        elif type(value) is str and value == "":
            out[i] = DEFER
            positions.append(i)
            reached.append(False)
        else:
            reached.append(True)
    return reached


class ValidatedColumns:
    """One chunk's columns, validated; each row's result is assembled on request.

    ``to_internal_value(i)`` returns or raises exactly what
    ``serializer.to_internal_value(rows[i])`` would. Rows are to be asked in order
    when any field is per-row: those fields run DRF's steps then, so a
    ``validate_<field>`` reading ``serializer.instance`` sees the row's.
    """

    def __init__(
        self,
        plan: ColumnPlan,
        rows: list,
        outs: list[list],
        whole: set[int],
        bad: set[int],
        slotted: list[tuple[int, tuple, list[bool]]] | None = None,
    ) -> None:
        self.plan = plan
        self.rows = rows
        self._outs = outs
        self._whole = whole
        self._bad = bad
        # (field position, its unique slots, which rows' cells note them)
        self._slotted = slotted or []
        self._by_row = list(zip(*outs, strict=True)) if outs and plan.flat else None
        self._index: dict[int, int] | None = None  # id(row) -> index, built if asked out of order
        self._next = 0  # rows are usually asked in order: the index to try first
        # Rows whose column-noted unique slots wait for ``deferred_keys`` (defer_notes()).
        self.deferred: set[int] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def index_of(self, row: Any) -> int | None:
        """Where this very row object is in the chunk (``None``: not one of its rows)."""
        rows = self.rows
        index = self._next
        if index < len(rows) and rows[index] is row:  # the usual case: asked in order
            self._next = index + 1
            return index
        if self._index is None:
            self._index = {id(row): index for index, row in enumerate(rows)}
        found = self._index.get(id(row))
        return found if found is not None and rows[found] is row else None

    def defer_notes(self) -> set[int]:
        """Leave the unique slots of the rows answered from the columns unnoted; the
        caller takes their keys for the whole chunk from ``deferred_keys`` and builds
        a row's notes with ``column_notes`` only where it needs them (a row that fails,
        or whose value is taken): a ``Noted`` per row and slot cost more than the
        rest of such a row's validation. Returns the set the deferred rows go into."""
        self.deferred = set()
        return self.deferred

    def answered(self, index: int) -> tuple | None:
        """The row's validated values, in ``plan.keys`` order, when the columns answer it
        whole (``to_internal_value`` would zip them with the keys, noting nothing once
        notes are deferred), else ``None``."""
        if self._by_row is None or index in self._bad:
            return None
        if self._slotted and self.deferred is not None:
            self.deferred.add(index)
        elif self._slotted:
            return None  # its notes are made by to_internal_value
        self._next = index + 1
        return self._by_row[index]

    def column_notes(self, index: int) -> list[Noted]:
        """The notes ``to_internal_value(index)`` would have made, in the same order."""
        noted: list[Noted] = []
        if self._by_row is not None:
            values = self._by_row[index]
            for k, slots, reached in self._slotted:
                if reached[index]:
                    _note(noted, slots, values[k])
        return noted

    def deferred_keys(self, indexes: Sequence[int]) -> Iterator[tuple[Any, list[int], list[Any]]]:
        """Per unique slot, ``(slot, indexes, keys)``: the rows among ``indexes`` (deferred
        ones) that reached it, and the key each would note there (``None``: none), as
        ``column_notes`` would note them, a column at a time."""
        for k, slots, reached in self._slotted:
            column = self._outs[k]
            kept = [index for index in indexes if reached[index]]
            values = [column[index] for index in kept]
            for slot in slots:
                check = slot.check
                if check.plain:  # the value is the key
                    keys = [None if value is None else (value,) for value in values]
                else:
                    keys = [check.key_of_noted(value, None) for value in values]
                yield slot, kept, keys

    def to_internal_value(self, index: int) -> dict:
        plan = self.plan
        if index in self._whole:
            serializer = plan.serializer
            if plan.columnar:
                return serializers.Serializer.to_internal_value(serializer, self.rows[index])
            return serializer.to_internal_value(self.rows[index])
        if self._by_row is not None and index not in self._bad:
            values = self._by_row[index]
            if self._slotted and self.deferred is not None:
                self.deferred.add(index)
            elif self._slotted:
                noted = noted_list(plan.serializer)
                for k, slots, reached in self._slotted:
                    if reached[index]:
                        _note(noted, slots, values[k])
            return dict(zip(plan.keys, values, strict=True))
        return self._assemble(index)

    def outcome(self, index: int) -> tuple[dict | None, Any]:
        try:
            return self.to_internal_value(index), None
        except ValidationError as exc:
            return None, exc.detail

    def outcomes(self) -> list[tuple[dict | None, Any]]:
        if self._by_row is None or self._bad or self._slotted:
            return [self.outcome(index) for index in range(len(self.rows))]
        keys = self.plan.keys
        return [(dict(zip(keys, values, strict=True)), None) for values in self._by_row]

    def _assemble(self, index: int) -> dict:
        """``Serializer.to_internal_value``'s loop over the fields, for one row."""
        serializer = self.plan.serializer
        row = self.rows[index]
        ret: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        slotted = {k: (slots, reached) for k, slots, reached in self._slotted}
        for k, ((name, attrs, field), out) in enumerate(
            zip(self.plan.fields, self._outs, strict=True)
        ):
            value = out[index]
            if k in slotted and type(value) is not Outcome:
                slots, reached = slotted[k]
                if reached[index]:
                    _note(noted_list(serializer), slots, value)
            if type(value) is Outcome:
                if value is DEFER:
                    validate_method = getattr(serializer, "validate_" + name, None)
                    try:
                        value = field.run_validation(field.get_value(row))
                        if validate_method is not None:
                            value = validate_method(value)
                    except ValidationError as exc:
                        errors[name] = exc.detail
                        continue
                    except DjangoValidationError as exc:
                        errors[name] = get_error_detail(exc)
                        continue
                    except SkipField:
                        continue
                elif value.kind == FAIL:
                    errors[name] = value.detail
                    continue
                elif value is SKIP:
                    continue
                else:
                    raise value.detail
            if len(attrs) == 1:
                ret[attrs[0]] = value
            else:
                serializer.set_value(ret, attrs, value)
        if errors:
            raise ValidationError(errors)
        return ret
