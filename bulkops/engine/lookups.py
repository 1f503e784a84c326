"""Query helpers for set-based validation, and the related-field resolver that
answers DRF's per-row lookups from one query per chunk."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connections, models
from django.db.models import BooleanField, F, Func, Value
from rest_framework.exceptions import ValidationError
from rest_framework.relations import PrimaryKeyRelatedField, SlugRelatedField

_MISSING = object()
AMBIGUOUS = object()

# Lone surrogates: JSON cannot encode them, PostgreSQL text cannot hold them.
SURROGATES = re.compile("[\ud800-\udfff]")


class _EqualsAny(Func):
    """``column = ANY(%s)`` with the values as one array parameter (PostgreSQL).

    ``column IN (%s, %s, ...)`` with a thousand placeholders costs milliseconds
    of query building and parsing per chunk; one array parameter costs none.
    """

    arg_joiner = " = ANY("
    template = "(%(expressions)s))"
    output_field = BooleanField()


def filter_in(queryset: Any, lookup: str, values: list) -> Any:
    """``queryset.filter(<lookup>__in=values)``, as one array parameter on PostgreSQL."""
    if connections[queryset.db].vendor == "postgresql" and "__" not in lookup:
        return queryset.filter(_EqualsAny(F(lookup), Value(values)))
    return queryset.filter(**{f"{lookup}__in": values})


def in_batches(values: list, connection: Any) -> list[list]:
    """Split an ``__in`` list only where the backend caps query parameters (SQLite)."""
    cap = connection.features.max_query_params
    if not cap or len(values) <= cap - 10:
        return [values]
    step = cap - 10
    return [values[i : i + step] for i in range(0, len(values), step)]


_INTEGER_TEXT = re.compile(r"\s*[-+]?\d+\s*")
_BIGINT = 2**63


def lookup_value(model_field: models.Field, value: Any) -> Any:
    """``value`` as ``model_field`` holds it, fit to send in a query — or an error.

    What the database would choke on (NUL characters, which PostgreSQL refuses in
    text; 1.5 or True as an id, which ``int()`` would quietly turn into 1; ids
    beyond 64 bits) is refused here, so it becomes the row's error, not a 500.
    """
    if isinstance(value, dict | list | bool) or value is None:
        raise TypeError(value)
    if isinstance(value, str) and ("\x00" in value or SURROGATES.search(value)):
        raise ValidationError("Null characters are not allowed.", code="null_characters")
    if _is_integer(model_field):
        if not isinstance(value, int) and not (
            isinstance(value, str) and _INTEGER_TEXT.fullmatch(value)
        ):
            raise ValidationError("A valid integer is required.", code="invalid")
        value = int(value)
        if not -_BIGINT < value < _BIGINT:
            raise ValidationError("A valid integer is required.", code="max_string_length")
        return value
    return model_field.to_python(value)


@functools.lru_cache(maxsize=256)
def _is_integer(model_field: models.Field) -> bool:
    # AutoField's metaclass makes isinstance() slow; this runs per row.
    return isinstance(model_field, models.IntegerField | models.AutoField)


class RelationResolver:
    """Resolves a ``SlugRelatedField`` / ``PrimaryKeyRelatedField`` from a per-chunk map.

    ``prefetch`` runs one query for every value of the chunk; the field's
    ``to_internal_value`` is replaced on this serializer instance so DRF's own
    per-row flow asks the map instead of the database, with DRF's messages.
    """

    def __init__(self, field: SlugRelatedField | PrimaryKeyRelatedField) -> None:
        self.field = field
        if isinstance(field, SlugRelatedField):
            self.lookup = field.slug_field
        else:
            self.lookup = "pk"
        self.map: dict[Any, Any] = {}
        self.raw_keys: dict[Any, Any] = {}
        field.to_internal_value = self.to_internal_value  # type: ignore[method-assign]

    @property
    def field_name(self) -> str:
        return self.field.field_name

    def _model_field(self, model: type[models.Model]) -> models.Field:
        if self.lookup == "pk":
            return model._meta.pk  # type: ignore[return-value]
        return model._meta.get_field(self.lookup)  # type: ignore[return-value]

    def _key(self, value: Any) -> Any:
        if isinstance(self.field, PrimaryKeyRelatedField) and self.field.pk_field is not None:
            value = self.field.pk_field.to_internal_value(value)
        return lookup_value(self.model_field, value)

    def prefetch(self, items: Iterable[Mapping[str, Any]]) -> None:
        """Fetch the related objects named by these items (their raw values), in one query."""
        queryset = self.field.get_queryset()
        self.model_field = self._model_field(queryset.model)
        keys = set()
        # Raw value -> key, so the per-row lookup does not clean the value twice.
        self.raw_keys = {}
        name = self.field_name
        for item in items:
            value = item.get(name)
            if value is None or value == "":
                continue
            try:
                key = self._key(value)
            except (TypeError, ValueError, DjangoValidationError, ValidationError):
                continue
            keys.add(key)
            if isinstance(value, str | int):
                self.raw_keys[value] = key
        self.map = {}
        if not keys:
            return
        connection = connections[queryset.db]
        attr = self.model_field.attname if self.lookup != "pk" else "pk"
        for part in in_batches(list(keys), connection):
            for obj in filter_in(queryset, self.lookup, part):
                key = getattr(obj, attr)
                self.map[key] = AMBIGUOUS if key in self.map else obj

    def to_internal_value(self, data: Any) -> Any:
        field = self.field
        try:
            if type(data) in (str, int) and data in self.raw_keys:
                key = self.raw_keys[data]
            else:
                key = self._key(data)
        except (TypeError, ValueError, DjangoValidationError, ValidationError):
            if isinstance(field, SlugRelatedField):
                field.fail("invalid")
            field.fail("incorrect_type", data_type=type(data).__name__)
        obj = self.map.get(key, _MISSING)
        if obj is _MISSING:
            if isinstance(field, SlugRelatedField):
                field.fail("does_not_exist", slug_name=field.slug_field, value=str(data))
            field.fail("does_not_exist", pk_value=data)
        if obj is AMBIGUOUS:
            field.fail("invalid")
        return obj
