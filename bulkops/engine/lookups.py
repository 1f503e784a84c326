"""Query helpers for set-based validation, and the related-field resolver that
answers DRF's per-row lookups from one query per chunk."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connections, models
from django.db.models import BooleanField, F, Func, Value
from django.utils.encoding import smart_str
from rest_framework.exceptions import ValidationError
from rest_framework.relations import (
    ManyRelatedField,
    PrimaryKeyRelatedField,
    RelatedField,
    SlugRelatedField,
)

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


class _EqualsAnyText(Func):
    """``column = ANY(<the texts of a JSON array>)``, the array as one text parameter
    (PostgreSQL, a text or varchar column).

    An array parameter reaches the server as a literal, and the planner estimates each
    of its elements against the column's statistics: a thousand keys cost 20 ms of
    planning per query on a table of 200,000 analysed rows. The elements of a JSON
    array are only known when the query runs, so nothing is estimated per element
    (2 ms, the index lookups included). The comparison is the same ``text = text``.
    """

    arg_joiner = " = ANY(ARRAY(SELECT json_array_elements_text("
    template = "(%(expressions)s::json))))"
    output_field = BooleanField()


def filter_in(queryset: Any, lookup: str, values: list) -> Any:
    """``queryset.filter(<lookup>__in=values)``, as one array parameter on PostgreSQL
    (texts for a text column: one JSON array)."""
    connection = connections[queryset.db]
    if connection.vendor == "postgresql" and "__" not in lookup:
        if values and all(type(value) is str for value in values):
            texts = json.dumps(values, ensure_ascii=False)
            # NUL fits no text column: such a value keeps the array's own error.
            if "\\u0000" not in texts and _is_text_column(queryset.model, lookup, connection):
                return queryset.filter(_EqualsAnyText(F(lookup), Value(texts)))
        return queryset.filter(_EqualsAny(F(lookup), Value(values)))
    return queryset.filter(**{f"{lookup}__in": values})


def _is_text_column(model: type[models.Model], lookup: str, connection: Any) -> bool:
    """Whether ``lookup`` names a text or varchar column of ``model``, whose values
    compare as ``text`` (not ``char``, which pads, nor ``citext``, which ignores case)."""
    meta = model._meta
    try:
        field = meta.pk if lookup == "pk" else meta.get_field(lookup)
    except FieldDoesNotExist:
        return False
    if field is None or not getattr(field, "concrete", False) or field.is_relation:
        return False
    db_type = (field.db_type(connection) or "").lower()
    return db_type == "text" or db_type.startswith("varchar")


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


NULL_CHARACTERS = "Null characters are not allowed."


def refuse_null_characters(data: Any) -> None:
    """NUL in a value a related field looks up: the same error on every database
    (PostgreSQL cannot even be asked; DRF would answer 500 there), worded as DRF's
    ``ProhibitNullCharactersValidator`` words it for text fields."""
    if isinstance(data, str) and "\x00" in data:
        raise ValidationError(NULL_CHARACTERS, code="null_characters")


def guard_related_fields(serializer: Any) -> None:
    """Make the related fields of ``serializer`` (an instance) refuse NUL characters
    before they query (``refuse_null_characters``): the single endpoints and the bulk
    engine then give the same 400 where the database would refuse the lookup."""
    for field in serializer.fields.values():
        related = field.child_relation if isinstance(field, ManyRelatedField) else field
        if not isinstance(related, RelatedField) or getattr(related, "_bulkops_guarded", False):
            continue
        lookup = related.to_internal_value

        def guarded(data: Any, lookup: Any = lookup, field: Any = related) -> Any:
            refuse_null_characters(data)
            try:
                return lookup(data)
            except OverflowError:  # int(1e400) in Django's lookup: DRF lets it through
                _fail_type(field, data)

        related.to_internal_value = guarded  # type: ignore[method-assign]
        related._bulkops_guarded = True  # type: ignore[attr-defined]


class RelationResolver:
    """Resolves a ``SlugRelatedField`` / ``PrimaryKeyRelatedField`` from a per-chunk map.

    ``prefetch`` runs one query for every value of the chunk; the field's
    ``to_internal_value`` is replaced on this serializer instance so DRF's own
    per-row flow asks the map instead of the database. A value is prepared as
    Django prepares it for DRF's own ``queryset.get(<field>=value)`` (``get_prep_value``),
    so the same values are found, and refused with the same messages.
    """

    def __init__(self, field: SlugRelatedField | PrimaryKeyRelatedField) -> None:
        self.field = field
        self.is_slug = isinstance(field, SlugRelatedField)
        self.lookup = field.slug_field if isinstance(field, SlugRelatedField) else "pk"
        self.map: dict[Any, Any] = {}
        self.raw_keys: dict[Any, Any] = {}
        self.model_field: models.Field | None = None  # known once prefetch has the queryset
        field.to_internal_value = self.to_internal_value  # type: ignore[method-assign]
        field._bulkops_guarded = True  # type: ignore[union-attr]

    @property
    def field_name(self) -> str:
        return self.field.field_name

    def _model_field(self, model: type[models.Model]) -> models.Field:
        if self.lookup == "pk":
            return model._meta.pk  # type: ignore[return-value]
        return model._meta.get_field(self.lookup)  # type: ignore[return-value]

    def model_field_of_source(self, model: type[models.Model]) -> Any:
        """The foreign key of ``model`` this field sets, if it sets one."""
        try:
            model_field = model._meta.get_field(self.field.source)
        except Exception:
            return None
        return model_field if model_field.many_to_one or model_field.one_to_one else None

    def _convert(self, data: Any) -> Any:
        """What DRF does to the value before its lookup (``pk_field``); errors propagate
        as DRF lets them."""
        refuse_null_characters(data)
        field = self.field
        if isinstance(field, PrimaryKeyRelatedField) and field.pk_field is not None:
            data = field.pk_field.to_internal_value(data)
        return data

    def _key(self, data: Any) -> Any:
        """The value the database compares: ``TypeError``/``ValueError`` where DRF's
        lookup fails with them (DRF: "Invalid value." / "Incorrect type.")."""
        if not self.is_slug and isinstance(data, bool):
            raise TypeError(data)
        try:
            key = self.model_field.get_prep_value(data)  # type: ignore[union-attr]
        except OverflowError as exc:  # int(1e400): refused as the guarded lookup refuses it
            raise ValueError(str(exc)) from None
        if isinstance(key, str) and SURROGATES.search(key) is not None:
            raise ValueError("surrogates cannot be encoded")  # as the database driver does
        return key

    def prefetch(self, items: Iterable[Mapping[str, Any]]) -> None:
        """Fetch the related objects named by these items (their raw values), in one query."""
        queryset = self.field.get_queryset()
        self.model_field = self._model_field(queryset.model)
        keys = set()
        # Raw value -> key, so the per-row lookup does not prepare the value twice.
        self.raw_keys = {}
        name = self.field_name
        seen: set[Any] = set()  # text and int values prepared already: once per distinct value
        for item in items:
            value = item.get(name)
            kind = type(value)
            if kind is str or kind is int:
                if value in seen:
                    continue
                seen.add(value)
            if value is None or value == "":
                continue
            try:
                key = self._key(self._convert(value))
            except (TypeError, ValueError, DjangoValidationError, ValidationError):
                continue  # the row's own lookup says why (or raises as DRF's would)
            if key is None or not _storable(self.model_field, key, queryset.db):
                continue
            keys.add(key)
            if kind is str or kind is int:
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
        if type(data) in (str, int) and data in self.raw_keys:
            key = self.raw_keys[data]
        else:
            data = self._convert(data)
            try:
                key = self._key(data)
            except (TypeError, ValueError):
                _fail_type(field, data)
        obj = self.map.get(key, _MISSING)
        if obj is _MISSING:
            raise ValidationError(self.missing_message(data), code="does_not_exist")
        if obj is AMBIGUOUS:
            field.fail("invalid")
        return obj

    def missing_message(self, data: Any) -> str:
        """DRF's "does not exist" message of this field for ``data``."""
        field = self.field
        try:
            if isinstance(field, SlugRelatedField):
                field.fail("does_not_exist", slug_name=field.slug_field, value=smart_str(data))
            field.fail("does_not_exist", pk_value=data)
        except ValidationError as exc:
            return str(exc.detail[0])  # type: ignore[index]
        raise AssertionError("unreachable")  # pragma: no cover


def _fail_type(field: Any, data: Any) -> None:
    """DRF's message for a value its related field's lookup could not even prepare."""
    if isinstance(field, SlugRelatedField) or "incorrect_type" not in field.error_messages:
        field.fail("invalid")
    field.fail("incorrect_type", data_type=type(data).__name__)


def _storable(model_field: models.Field, key: Any, db: str) -> bool:
    """Whether the database could hold ``key`` (an integer beyond the column's range
    matches nothing, as Django's own lookup knows, and must not reach the query)."""
    if isinstance(key, int) and _is_integer(model_field):
        connection = connections[db]
        low, high = connection.ops.integer_field_range(model_field.get_internal_type())
        return (low is None or key >= low) and (high is None or key <= high)
    return True
