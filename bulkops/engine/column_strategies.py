"""How one field's column is validated: the strategies ``ColumnPlan`` chooses from.

Each strategy turns a column (one field's cells over a chunk) into each cell's
validated value or ``Outcome`` (an error detail, a skipped key, an exception to let
escape, or ``DEFER``: DRF's per-row steps run for the cell when its row is asked).
A fast path only ever *accepts* a cell it can prove DRF accepts, with DRF's value;
every other cell is DRF's own outcome (see ``columns`` and ``column_choice``).
"""

from __future__ import annotations

import datetime
import decimal
import functools
import re
from collections.abc import Callable
from typing import Any

from django.core import validators as dj
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import fields as f
from rest_framework.exceptions import ValidationError
from rest_framework.fields import SkipField, empty, get_error_detail

from . import lookups

# Strategies, as ColumnPlan.strategies names them.
TEXT, INTEGER, DECIMAL, DISTINCT, PER_ROW = "text", "integer", "decimal", "distinct", "per-row"

# Types whose equal values always get equal outcomes (and never equal another type's
# values, but for int/bool, which are never both taken): one set() finds a column's
# distinct values. float (-0.0 == 0.0), Decimal (1.0 == 1.00) and datetimes (equal
# instants in other zones) are keyed one by one instead, by _cache_key.
_EQUAL_MEANS_SAME = frozenset({str, int, bool, type(None), type, datetime.date})
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]{1,18}")
_DECIMAL_TEXT = re.compile(r"[+-]?([0-9]+)(?:\.([0-9]+))?")
_EXACT_INT = 10**18


class Outcome:
    """A cell that is not simply a validated value."""

    __slots__ = ("kind", "detail")

    def __init__(self, kind: str, detail: Any = None) -> None:
        self.kind = kind
        self.detail = detail


FAIL, RAISE = "fail", "raise"
SKIP = Outcome("skip")  # SkipField: the key is left out
DEFER = Outcome("defer")  # DRF's per-row steps run for this cell, in row order
_MISSING = object()


def _run(field: f.Field, value: Any) -> Any:
    """DRF's outcome for one value, caught the way ``Serializer.to_internal_value`` does."""
    try:
        return field.run_validation(value)
    except ValidationError as exc:
        return Outcome(FAIL, exc.detail)
    except DjangoValidationError as exc:
        return Outcome(FAIL, get_error_detail(exc))
    except SkipField:
        return SKIP
    except Exception as exc:  # DRF would let it escape at this row: so will we
        return Outcome(RAISE, exc)


def _cache_key(value: Any) -> Any:
    """A key under which equal keys always mean DRF gives the same outcome; None: no cache."""
    kind = type(value)
    if kind in _EQUAL_MEANS_SAME:
        return (kind, value)
    if kind is float:
        return (kind, repr(value))
    if kind is decimal.Decimal:
        return (kind, str(value))
    if kind is datetime.datetime or kind is datetime.time:
        key = (kind, value, value.tzinfo, value.fold)
        try:
            hash(key)
        except TypeError:
            return None
        return key
    return None


class Column:
    """One field's strategy; ``values`` gives the outcome of each cell of a column."""

    strategy = DISTINCT
    slots: tuple = ()  # the unique slots the field's own validators hold (column_choice)

    def __init__(self, field: f.Field, *, defer_empty: bool) -> None:
        self.field = field
        self.defer_empty = defer_empty

    def miss(self, value: Any) -> Any:
        """The outcome of one value not seen before in this column."""
        if value is empty and self.defer_empty:
            return DEFER
        return _run(self.field, value)

    def values(self, column: list) -> tuple[list, list[int]]:
        """Each cell's validated value or Outcome, and the positions of the Outcomes."""
        miss = self.prepare()
        kinds = set(map(type, column))
        if kinds <= _EQUAL_MEANS_SAME and not (int in kinds and bool in kinds):
            distinct = set(column)
            table = self.exact_texts(distinct) if kinds == {str} else {}
            if table:
                for value in distinct.difference(table):
                    table[value] = miss(value)
            else:
                table = {value: miss(value) for value in distinct}
            return list(map(table.__getitem__, column)), _positions(table, column)
        if kinds == {float}:  # spreadsheet numbers: keyed by repr, -0.0 apart from 0.0
            keys = list(map(repr, column))
            table = {
                key: miss(value) for key, value in dict(zip(keys, column, strict=True)).items()
            }
            return list(map(table.__getitem__, keys)), _positions(table, keys)
        return self.one_by_one(column, miss)

    def prepare(self) -> Callable[[Any], Any]:
        """Per-chunk set-up (read the field's options now, not when the plan was made)."""
        return self.miss

    def exact_texts(self, texts: set[str]) -> dict[str, Any]:
        """The validated values of the texts whose outcome can be had for all of them at
        once (what ``miss`` gives each); ``{}``: none, all go one by one."""
        return {}

    @staticmethod
    def one_by_one(column: list, miss: Callable[[Any], Any]) -> tuple[list, list[int]]:
        cache: dict[Any, Any] = {}
        out, positions = [], []
        for position, value in enumerate(column):
            key = _cache_key(value)
            if key is None:
                outcome = miss(value)
            else:
                outcome = cache.get(key, _MISSING)
                if outcome is _MISSING:
                    outcome = cache[key] = miss(value)
            if type(outcome) is Outcome:
                positions.append(position)
            out.append(outcome)
        return out, positions


def _positions(table: dict, keys: list) -> list[int]:
    """Where in ``keys`` the keys whose outcome in ``table`` is an Outcome are."""
    odd = {key for key, outcome in table.items() if type(outcome) is Outcome}
    return [i for i, key in enumerate(keys) if key in odd] if odd else []


class PerRowColumn(Column):
    strategy = PER_ROW

    def values(self, column: list) -> tuple[list, list[int]]:
        return [DEFER] * len(column), list(range(len(column)))


class TextColumn(Column):
    """A CharField (or subclass) whose validators are only length, NUL and surrogates."""

    strategy = TEXT

    def values(self, column: list) -> tuple[list, list[int]]:
        field = self.field
        low, high = 0, None
        for validator in field.validators:
            if type(validator) is dj.MinLengthValidator:
                low = max(low, validator.limit_value)
            elif type(validator) is dj.MaxLengthValidator:
                high = validator.limit_value if high is None else min(high, validator.limit_value)
        trim = field.trim_whitespace
        if column and set(map(type, column)) == {str}:
            texts = list(map(str.strip, column)) if trim else list(column)
            lengths = list(map(len, texts))
            if min(lengths) >= max(low, 1) and (high is None or max(lengths) <= high):
                joined = "".join(texts)
                if "\x00" not in joined and lookups.SURROGATES.search(joined) is None:
                    return texts, []
        cache: dict[Any, Any] = {}
        miss = self.miss
        out, positions = [], []
        for position, value in enumerate(column):
            if type(value) is str:
                text = value.strip() if trim else value
                if (
                    text
                    and len(text) >= low
                    and (high is None or len(text) <= high)
                    and "\x00" not in text
                    and lookups.SURROGATES.search(text) is None
                ):
                    out.append(text)
                    continue
            key = _cache_key(value)
            if key is None:
                outcome = miss(value)
            else:
                outcome = cache.get(key, _MISSING)
                if outcome is _MISSING:
                    outcome = cache[key] = miss(value)
            if type(outcome) is Outcome:
                positions.append(position)
            out.append(outcome)
        return out, positions


@functools.lru_cache(maxsize=64)
def _exact_decimal_text(max_whole: int, places: int) -> re.Pattern[str]:
    return re.compile(rf"[+-]?(?:0|[1-9][0-9]{{0,{max_whole - 1}}})\.[0-9]{{{places}}}")


def _within_limits(field: f.Field, texts: list[str], numbers: list[Any]) -> dict[str, Any]:
    """``texts`` with their ``numbers`` when the smallest and the largest number are within
    the limits of the field's range validators (then every one is); ``{}`` when not, or
    when a limit does not compare with them (each then gets its own outcome)."""
    if not numbers:
        return {}
    lows, highs = _limits(field)
    try:
        if lows and any(min(numbers) < limit for limit in lows):
            return {}
        if highs and any(max(numbers) > limit for limit in highs):
            return {}
    except Exception:  # not comparable: DRF says what it says, one by one
        return {}
    return dict(zip(texts, numbers, strict=True))


def _limits(field: f.Field) -> tuple[tuple, tuple]:
    """The limits of the field's Min/MaxValueValidators (Django refuses ``value < low``
    and ``value > high``)."""
    lows = tuple(v.limit_value for v in field.validators if type(v) is dj.MinValueValidator)
    highs = tuple(v.limit_value for v in field.validators if type(v) is dj.MaxValueValidator)
    return lows, highs


class IntegerColumn(Column):
    """An IntegerField with only range validators: ASCII digits become DRF's int."""

    strategy = INTEGER

    def exact_texts(self, texts: set[str]) -> dict[str, Any]:
        """The texts of at most 18 ASCII digits: their int is what ``miss`` gives them."""
        exact = list(filter(_INTEGER_TEXT.fullmatch, texts))
        return _within_limits(self.field, exact, list(map(int, exact)))

    def prepare(self) -> Callable[[Any], Any]:
        lows, highs = _limits(self.field)
        run = super().miss

        def miss(value: Any) -> Any:
            kind = type(value)
            if kind is str and _INTEGER_TEXT.fullmatch(value):
                number = int(value)
            elif kind is int and -_EXACT_INT < value < _EXACT_INT:
                number = value
            else:
                return run(value)
            try:
                for limit in lows:
                    if number < limit:
                        return run(value)
                for limit in highs:
                    if number > limit:
                        return run(value)
            except Exception:  # not comparable: DRF says what it says
                return run(value)
            return number

        return miss


class DecimalColumn(Column):
    """A DecimalField (not localized) with only range validators: ASCII digits with an
    optional fraction become DRF's quantized Decimal when within its precision."""

    strategy = DECIMAL

    def values(self, column: list) -> tuple[list, list[int]]:
        if column and set(map(type, column)) == {float}:  # as in Column, but repr once
            keys = list(map(repr, column))
            number_of = self.prepare_text()
            pairs = dict(zip(keys, column, strict=True))
            table = {key: number_of(key, value) for key, value in pairs.items()}
            return list(map(table.__getitem__, keys)), _positions(table, keys)
        return super().values(column)

    def exact_texts(self, texts: set[str]) -> dict[str, Any]:
        """The texts written as the field writes its numbers (an optional sign, at most
        ``max_whole_digits`` digits without leading zeros, a point, exactly
        ``decimal_places`` digits): their Decimal is what ``number_of`` gives them
        (nothing to pad, round or refuse for precision)."""
        field = self.field
        max_digits, places = field.max_digits, field.decimal_places
        if max_digits is None or not places or max_digits <= places:
            return {}
        pattern = _exact_decimal_text(max_digits - places, places)
        exact = list(filter(pattern.fullmatch, texts))
        return _within_limits(field, exact, list(map(decimal.Decimal, exact)))

    def prepare(self) -> Callable[[Any], Any]:
        number_of = self.prepare_text()
        run = super().prepare()

        def miss(value: Any) -> Any:
            kind = type(value)
            if kind is str:
                return number_of(value, value)
            if kind is int and -_EXACT_INT < value < _EXACT_INT:
                return number_of(str(value), value)
            if kind is float:
                return number_of(repr(value), value)
            return run(value)

        return miss

    def prepare_text(self) -> Callable[[str, Any], Any]:
        """``number_of(text, value)``: DRF's outcome for ``value``, whose smart_str is
        ``text``."""
        field = self.field
        lows, highs = _limits(field)
        max_digits, places = field.max_digits, field.decimal_places
        max_whole = field.max_whole_digits
        rounding = field.rounding
        # As DecimalField.quantize makes it, from the context of the calling thread.
        context = decimal.getcontext().copy()
        if max_digits is not None:
            context.prec = max_digits
        quantum = decimal.Decimal(1).scaleb(-places) if places is not None else None
        # With max_digits set, the checks below keep the quantized number within the
        # context's precision, so quantizing is padding the text with zeros.
        pad = places is not None and max_digits is not None
        run = super().miss
        Decimal = decimal.Decimal

        def number_of(text: str, value: Any) -> Any:
            match = _DECIMAL_TEXT.fullmatch(text) if len(text) <= 64 else None
            if match is None:
                return run(value)
            # DecimalField.validate_precision's digit counts, read off the text.
            whole_text, fraction = match.groups()
            whole = len(whole_text.lstrip("0"))
            if fraction is None:
                whole = total = whole or 1
                decimals = 0
            else:
                decimals = len(fraction)
                total = whole + decimals
            if (
                (max_digits is not None and total > max_digits)
                or (places is not None and decimals > places)
                or (max_whole is not None and whole > max_whole)
            ):
                return run(value)
            try:
                if pad:
                    if decimals < places:
                        text += "0" * (places - decimals) if fraction else "." + "0" * places
                    number = Decimal(text)
                else:
                    number = Decimal(text)
                    if quantum is not None:
                        number = number.quantize(quantum, rounding=rounding, context=context)
                for limit in lows:
                    if number < limit:
                        return run(value)
                for limit in highs:
                    if number > limit:
                        return run(value)
            except Exception:  # signals of the context, incomparable limits: DRF's outcome
                return run(value)
            return number

        return number_of
