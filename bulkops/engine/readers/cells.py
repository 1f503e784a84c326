"""Spreadsheet cells -> values a DRF field accepts as if typed by hand.

Spreadsheet programs store every number as a float and every date as a
date-time, so ``15`` arrives as ``15.0`` and a date as midnight. Each column
gets one converter, chosen once from its field's type, that undoes exactly
that and nothing more: text stays text ("00123" keeps its zeros) and a value
the field would reject is passed on for the field to reject with its own
message. Converters never change text, so readers may skip them for ``str``.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rest_framework import serializers
from rest_framework.relations import ManyRelatedField, RelatedField

Converter = Callable[[Any], Any]

_MIDNIGHT = datetime.time(0)


def is_empty(value: Any) -> bool:
    """Empty cells and blank text are "no value": the row omits the field."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value or value.isspace()
    return False


def _integral_to_int(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _to_text_like(value: Any) -> Any:
    # Text and related-object fields (a slug, a pk) read "15", not "15.0".
    value = _integral_to_int(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return _to_date_if_midnight(value).isoformat()
    return value


def _to_decimal_text(value: Any) -> Any:
    # repr() is the shortest text that round-trips the float, so 19.99 stays
    # "19.99" instead of Decimal(19.99)'s 19.989999999999998436805981327779591083526611328125.
    if isinstance(value, float) and math.isfinite(value):
        return str(Decimal(repr(value)))
    return value


def _to_date_if_midnight(value: Any) -> Any:
    if isinstance(value, datetime.datetime) and not value.tzinfo and value.time() == _MIDNIGHT:
        return value.date()
    return value


def _to_datetime(value: Any) -> Any:
    # A date typed into a date-time column means the start of that day.
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return datetime.datetime.combine(value, _MIDNIGHT)
    return value


def _unchanged(value: Any) -> Any:
    return value


def converter_for(field: serializers.Field) -> Converter:
    """The converter for cells bound to ``field``."""
    if isinstance(field, serializers.BooleanField):
        # DRF's BooleanField takes 1 and 0, not 1.0.
        return _integral_to_int
    if isinstance(field, serializers.IntegerField):
        return _integral_to_int
    if isinstance(field, serializers.DecimalField):
        return _to_decimal_text
    if isinstance(field, serializers.DateTimeField):
        return _to_datetime
    if isinstance(field, serializers.DateField):
        return _to_date_if_midnight
    if isinstance(field, serializers.CharField | serializers.ChoiceField | serializers.UUIDField):
        return _to_text_like
    if isinstance(field, RelatedField | ManyRelatedField):
        return _to_text_like
    return _unchanged
