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

import datetime
import decimal
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.core import validators as dj
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import fields as f
from rest_framework import relations, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.fields import SkipField, empty, get_error_detail
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from . import lookups
from . import serializer as engine_serializer

__all__ = ["ColumnPlan", "ValidatedColumns"]

# Strategies, as ColumnPlan.strategies names them.
TEXT, INTEGER, DECIMAL, DISTINCT, PER_ROW = "text", "integer", "decimal", "distinct", "per-row"

_DRF_MODULES = frozenset({"rest_framework.fields", "rest_framework.relations"})
_RELATED = (relations.SlugRelatedField, relations.PrimaryKeyRelatedField)
_TEXT_FIELDS = (f.CharField, f.EmailField, f.RegexField, f.SlugField, f.URLField)
_INTEGER_FIELDS = (f.IntegerField, *([f.BigIntegerField] if hasattr(f, "BigIntegerField") else []))
_SUPPORTED = frozenset(
    {
        *_TEXT_FIELDS,
        *_INTEGER_FIELDS,
        *_RELATED,
        f.IPAddressField,
        f.UUIDField,
        f.FloatField,
        f.DecimalField,
        f.BooleanField,
        f.DateField,
        f.DateTimeField,
        f.TimeField,
        f.DurationField,
        f.ChoiceField,
    }
)
# What DRF's validation path calls or reads as code: a subclass (or an instance)
# defining one of these may do anything, so its field keeps the per-row path.
_BEHAVIOUR = frozenset(
    {
        "run_validation",
        "to_internal_value",
        "get_value",
        "validate_empty_values",
        "get_default",
        "run_validators",
        "validators",
        "get_validators",
        "fail",
        "root",
        "context",
        "validate_precision",
        "quantize",
        "enforce_timezone",
        "default_timezone",
        "datetime_parser",
        "choices",
        "_get_choices",
        "_set_choices",
        "_lower_if_str",
        "get_queryset",
        "__getattribute__",
        "__getattr__",
    }
)
# Django's and DRF's validators whose outcome depends on the value alone.
_PURE_VALIDATORS = frozenset(
    {
        dj.RegexValidator,
        dj.URLValidator,
        dj.DomainNameValidator,
        dj.EmailValidator,
        dj.MaxValueValidator,
        dj.MinValueValidator,
        dj.StepValueValidator,
        dj.MaxLengthValidator,
        dj.MinLengthValidator,
        dj.DecimalValidator,
        dj.ProhibitNullCharactersValidator,
        ProhibitSurrogateCharactersValidator,
        type(engine_serializer.SURROGATE_CHECK),
    }
)
_PURE_FUNCTIONS = frozenset(
    {
        dj.validate_ipv4_address,
        dj.validate_ipv6_address,
        dj.validate_ipv46_address,
        dj.validate_integer,
    }
)
_LENGTH_VALIDATORS = frozenset({dj.MaxLengthValidator, dj.MinLengthValidator})
_TEXT_VALIDATORS = _LENGTH_VALIDATORS | {
    dj.ProhibitNullCharactersValidator,
    ProhibitSurrogateCharactersValidator,
    type(engine_serializer.SURROGATE_CHECK),
}
_RANGE_VALIDATORS = frozenset({dj.MaxValueValidator, dj.MinValueValidator})

# Types whose equal values always get equal outcomes (and never equal another type's
# values, but for int/bool, which are never both taken): one set() finds a column's
# distinct values. float (-0.0 == 0.0), Decimal (1.0 == 1.00) and datetimes (equal
# instants in other zones) are keyed one by one instead, by _cache_key.
_EQUAL_MEANS_SAME = frozenset({str, int, bool, type(None), type, datetime.date})
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]{1,18}")
_DECIMAL_TEXT = re.compile(r"[+-]?([0-9]+)(?:\.([0-9]+))?")
_EXACT_INT = 10**18


class _Outcome:
    """A cell that is not simply a validated value."""

    __slots__ = ("kind", "detail")

    def __init__(self, kind: str, detail: Any = None) -> None:
        self.kind = kind
        self.detail = detail


_FAIL, _RAISE = "fail", "raise"
_SKIP = _Outcome("skip")  # SkipField: the key is left out
_DEFER = _Outcome("defer")  # DRF's per-row steps run for this cell, in row order
_MISSING = object()


def _run(field: f.Field, value: Any) -> Any:
    """DRF's outcome for one value, caught the way ``Serializer.to_internal_value`` does."""
    try:
        return field.run_validation(value)
    except ValidationError as exc:
        return _Outcome(_FAIL, exc.detail)
    except DjangoValidationError as exc:
        return _Outcome(_FAIL, get_error_detail(exc))
    except SkipField:
        return _SKIP
    except Exception as exc:  # DRF would let it escape at this row: so will we
        return _Outcome(_RAISE, exc)


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


class _Column:
    """One field's strategy; ``values`` gives the outcome of each cell of a column."""

    strategy = DISTINCT

    def __init__(self, field: f.Field, *, defer_empty: bool) -> None:
        self.field = field
        self.defer_empty = defer_empty

    def miss(self, value: Any) -> Any:
        """The outcome of one value not seen before in this column."""
        if value is empty and self.defer_empty:
            return _DEFER
        return _run(self.field, value)

    def values(self, column: list) -> tuple[list, list[int]]:
        """Each cell's validated value or _Outcome, and the positions of the _Outcomes."""
        miss = self.prepare()
        kinds = set(map(type, column))
        if kinds <= _EQUAL_MEANS_SAME and not (int in kinds and bool in kinds):
            table = {value: miss(value) for value in set(column)}
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
            if type(outcome) is _Outcome:
                positions.append(position)
            out.append(outcome)
        return out, positions


def _positions(table: dict, keys: list) -> list[int]:
    """Where in ``keys`` the keys whose outcome in ``table`` is an _Outcome are."""
    odd = {key for key, outcome in table.items() if type(outcome) is _Outcome}
    return [i for i, key in enumerate(keys) if key in odd] if odd else []


class _PerRow(_Column):
    strategy = PER_ROW

    def values(self, column: list) -> tuple[list, list[int]]:
        return [_DEFER] * len(column), list(range(len(column)))


class _Text(_Column):
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
            if type(outcome) is _Outcome:
                positions.append(position)
            out.append(outcome)
        return out, positions


def _limits(field: f.Field) -> tuple[tuple, tuple]:
    """The limits of the field's Min/MaxValueValidators (Django refuses ``value < low``
    and ``value > high``)."""
    lows = tuple(v.limit_value for v in field.validators if type(v) is dj.MinValueValidator)
    highs = tuple(v.limit_value for v in field.validators if type(v) is dj.MaxValueValidator)
    return lows, highs


class _Integer(_Column):
    """An IntegerField with only range validators: ASCII digits become DRF's int."""

    strategy = INTEGER

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


class _Decimal(_Column):
    """A DecimalField (not localized) with only range validators: ASCII digits with an
    optional fraction become DRF's quantized Decimal when within its precision."""

    strategy = DECIMAL

    def values(self, column: list) -> tuple[list, list[int]]:
        if column and set(map(type, column)) == {float}:  # as in _Column, but repr once
            keys = list(map(repr, column))
            number_of = self.prepare_text()
            pairs = dict(zip(keys, column, strict=True))
            table = {key: number_of(key, value) for key, value in pairs.items()}
            return list(map(table.__getitem__, keys)), _positions(table, keys)
        return super().values(column)

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


def _drf_base(field: f.Field) -> type | None:
    """The DRF class whose validation code ``field`` runs, or None if a subclass or the
    instance replaces part of it."""
    for klass in type(field).__mro__:
        if klass.__module__ in _DRF_MODULES:
            return klass
        if not _BEHAVIOUR.isdisjoint(vars(klass)):
            return None
    return None


def _pure_validator(validator: Any) -> bool:
    if getattr(validator, "requires_context", False):
        return False
    if type(validator) in _PURE_VALIDATORS:
        return not callable(getattr(validator, "limit_value", None))
    try:
        return validator in _PURE_FUNCTIONS
    except TypeError:
        return False


def _column_for(serializer: serializers.Serializer, field: f.Field) -> _Column:
    defer_empty = callable(field.default)
    per_row = _PerRow(field, defer_empty=True)
    if getattr(serializer, "validate_" + field.field_name, None) is not None:
        return per_row
    if field.source == "*" or type(field).get_value is not f.Field.get_value:
        return per_row
    base = _drf_base(field)
    if base not in _SUPPORTED:
        return per_row
    replaced = _BEHAVIOUR.intersection(vars(field))
    if base in _RELATED:
        # Only with the engine's per-chunk map (lookups.RelationResolver) in place of
        # the query DRF runs per row.
        method = vars(field).get("to_internal_value")
        if replaced != {"to_internal_value"} or not isinstance(
            getattr(method, "__self__", None), lookups.RelationResolver
        ):
            return per_row
    elif replaced:
        return per_row
    validators = field.validators
    if not all(_pure_validator(v) for v in validators):
        return per_row
    kinds = {type(v) for v in validators}
    if base in _TEXT_FIELDS and kinds <= _TEXT_VALIDATORS:
        return _Text(field, defer_empty=defer_empty)
    if kinds <= _RANGE_VALIDATORS and not any(
        callable(getattr(v, "limit_value", 0)) for v in validators
    ):
        if (
            base in _INTEGER_FIELDS
            and field.re_decimal is f.IntegerField.re_decimal
            and field.MAX_STRING_LENGTH >= 20
        ):
            return _Integer(field, defer_empty=defer_empty)
        if base is f.DecimalField and not field.localize and field.MAX_STRING_LENGTH >= 64:
            return _Decimal(field, defer_empty=defer_empty)
    return _Column(field, defer_empty=defer_empty)


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
        writable = list(serializer._writable_fields) if self.columnar else []
        self.fields = [(field.field_name, field.source_attrs, field) for field in writable]
        self.keys = [attrs[0] if attrs else None for _, attrs, _ in self.fields]
        self.flat = all(len(attrs) == 1 for _, attrs, _ in self.fields)

    @classmethod
    def for_serializer(cls, serializer: serializers.Serializer) -> ColumnPlan:
        return cls(serializer)

    def columns(self) -> list[_Column]:
        return [_column_for(self.serializer, field) for _, _, field in self.fields]

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
        for (name, _, _), column in zip(self.fields, self.columns(), strict=True):
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
            odd.update(positions)
            outs.append(out)
        return ValidatedColumns(self, rows, outs, whole, odd)

    def to_internal_values(self, rows: Sequence[Any]) -> list[tuple[dict | None, Any]]:
        """Per row ``(validated, None)`` or ``(None, error_detail)``: what DRF's
        ``to_internal_value`` returns or raises (``ValidationError.detail``) for it.
        Any other exception escapes as it would from DRF, at the first row raising it."""
        return self.validate_columns(rows).outcomes()


class ValidatedColumns:
    """One chunk's columns, validated; each row's result is assembled on request.

    ``to_internal_value(i)`` returns or raises exactly what
    ``serializer.to_internal_value(rows[i])`` would. Rows are to be asked in order
    when any field is per-row: those fields run DRF's steps then, so a
    ``validate_<field>`` reading ``serializer.instance`` sees the row's.
    """

    def __init__(
        self, plan: ColumnPlan, rows: list, outs: list[list], whole: set[int], bad: set[int]
    ) -> None:
        self.plan = plan
        self.rows = rows
        self._outs = outs
        self._whole = whole
        self._bad = bad
        self._by_row = list(zip(*outs, strict=True)) if outs and plan.flat else None

    def __len__(self) -> int:
        return len(self.rows)

    def to_internal_value(self, index: int) -> dict:
        plan = self.plan
        if index in self._whole:
            serializer = plan.serializer
            if plan.columnar:
                return serializers.Serializer.to_internal_value(serializer, self.rows[index])
            return serializer.to_internal_value(self.rows[index])
        if self._by_row is not None and index not in self._bad:
            return dict(zip(plan.keys, self._by_row[index], strict=True))
        return self._assemble(index)

    def outcome(self, index: int) -> tuple[dict | None, Any]:
        try:
            return self.to_internal_value(index), None
        except ValidationError as exc:
            return None, exc.detail

    def outcomes(self) -> list[tuple[dict | None, Any]]:
        if self._by_row is None or self._bad:
            return [self.outcome(index) for index in range(len(self.rows))]
        keys = self.plan.keys
        return [(dict(zip(keys, values, strict=True)), None) for values in self._by_row]

    def _assemble(self, index: int) -> dict:
        """``Serializer.to_internal_value``'s loop over the fields, for one row."""
        serializer = self.plan.serializer
        row = self.rows[index]
        ret: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for (name, attrs, field), out in zip(self.plan.fields, self._outs, strict=True):
            value = out[index]
            if type(value) is _Outcome:
                if value is _DEFER:
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
                elif value.kind == _FAIL:
                    errors[name] = value.detail
                    continue
                elif value is _SKIP:
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
