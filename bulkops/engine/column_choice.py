"""Which strategy validates a field's column (``column_for``): the fast ones only where
DRF's outcome for a cell provably depends on the cell alone.

A field keeps DRF's per-row path when it has a ``validate_<field>`` method, custom or
context-reading validators, a subclass (or instance) replacing part of DRF's validation
code, a whole-object or custom ``get_value`` source, or a type bulkops does not know.
"""

from __future__ import annotations

import copy
from typing import Any

from django.core import validators as dj
from rest_framework import fields as f
from rest_framework import relations, serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from . import lookups
from . import serializer as engine_serializer
from .column_strategies import Column, DecimalColumn, IntegerColumn, PerRowColumn, TextColumn
from .outcome import UniqueSlot

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


def column_for(serializer: serializers.Serializer, field: f.Field) -> Column:
    slots = [v for v in field.validators if type(v) is UniqueSlot]
    if slots:
        return _slotted_column_for(serializer, field, slots)
    defer_empty = callable(field.default)
    per_row = PerRowColumn(field, defer_empty=True)
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
        return TextColumn(field, defer_empty=defer_empty)
    if kinds <= _RANGE_VALIDATORS and not any(
        callable(getattr(v, "limit_value", 0)) for v in validators
    ):
        if (
            base in _INTEGER_FIELDS
            and field.re_decimal is f.IntegerField.re_decimal
            and field.MAX_STRING_LENGTH >= 20
        ):
            return IntegerColumn(field, defer_empty=defer_empty)
        if base is f.DecimalField and not field.localize and field.MAX_STRING_LENGTH >= 64:
            return DecimalColumn(field, defer_empty=defer_empty)
    return Column(field, defer_empty=defer_empty)


def _slotted_column_for(
    serializer: serializers.Serializer, field: f.Field, slots: list[UniqueSlot]
) -> Column:
    """A field whose unique validators the engine replaced by slots (``outcome``): its
    column is validated by a copy without them, and each accepted cell notes the slots
    as ``run_validators_noting`` would (``ValidatedColumns``). Refused cells run the
    field itself, per row, so their slots are noted where DRF's run stops."""
    per_row = PerRowColumn(field, defer_empty=True)
    if not getattr(vars(field).get("run_validators"), "notes_unique_slots", False):
        return per_row
    shadow = copy.copy(field)
    del vars(shadow)["run_validators"]
    shadow.validators = [v for v in field.validators if type(v) is not UniqueSlot]
    column = column_for(serializer, shadow)
    if isinstance(column, PerRowColumn):
        return per_row
    column.slots = tuple(slots)
    return column
