"""The project's serializer, with DRF's per-row bookkeeping done once per batch.

Same fields, same steps, same errors in the same order: only the work DRF redoes
for every row (listing writable fields, finding ``validate_<field>`` methods,
scanning for read-only defaults) is done once here.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.fields import Field, SkipField, empty, get_error_detail
from rest_framework.utils import html
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from .lookups import SURROGATES


class _SurrogateCheck(ProhibitSurrogateCharactersValidator):
    """DRF's validator, same message, with a regex instead of a per-character loop:
    it was a tenth of the validation time of a row with two text fields."""

    def __call__(self, value: Any) -> None:
        if SURROGATES.search(str(value)) is not None:
            super().__call__(value)


SURROGATE_CHECK = _SurrogateCheck()


def batch_serializer_class(serializer_class: type[Any]) -> type:
    """The project's serializer class with per-row bookkeeping done once per batch.

    DRF's ``_writable_fields`` is a generator over every field and
    ``_read_only_defaults`` a scan of every field, both re-run for every row;
    ``to_internal_value`` looks up each ``validate_<field>`` method and calls
    ``get_value``/``set_value`` per field per row. The subclass lists the
    writable fields and their ``validate_<field>`` methods once, skips the scan
    when no read-only field has a default, and reads plain dicts directly. Same
    steps, same errors, same order; a serializer that overrides
    ``to_internal_value`` keeps its own.
    """

    def _read_only_defaults(self: Any) -> dict:
        if not self._bulkops_read_only_defaults:
            return {}
        return serializer_class._read_only_defaults(self)

    attrs: dict[str, Any] = {
        "__module__": serializer_class.__module__,
        "_writable_fields": property(lambda self: self._bulkops_writable),
        "_read_only_defaults": _read_only_defaults,
    }
    if serializer_class.to_internal_value is serializers.Serializer.to_internal_value:
        attrs["to_internal_value"] = _to_internal_value
    return type(serializer_class.__name__, (serializer_class,), attrs)


def field_plan(serializer: Any) -> list[tuple]:
    """Per writable field: the field, its name, its ``validate_<field>`` method, whether
    ``get_value`` is DRF's plain one, and where the value goes."""
    plan = []
    for field in serializer._bulkops_writable:
        validate_method = getattr(serializer, "validate_" + field.field_name, None)
        plain_get = type(field).get_value is Field.get_value
        plan.append((field, field.field_name, validate_method, plain_get, field.source_attrs))
    return plan


def _to_internal_value(self: Any, data: Any) -> dict:
    """``Serializer.to_internal_value`` with the per-row lookups done once (see above)."""
    if not isinstance(data, dict) or html.is_html_input(data):
        return serializers.Serializer.to_internal_value(self, data)
    ret: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for field, name, validate_method, plain_get, source_attrs in self._bulkops_plan:
        primitive = data.get(name, empty) if plain_get else field.get_value(data)
        try:
            value = field.run_validation(primitive)
            if validate_method is not None:
                value = validate_method(value)
        except ValidationError as exc:
            errors[name] = exc.detail
        except DjangoValidationError as exc:
            errors[name] = get_error_detail(exc)
        except SkipField:
            pass
        else:
            if len(source_attrs) == 1:
                ret[source_attrs[0]] = value
            else:
                self.set_value(ret, source_attrs, value)
    if errors:
        raise ValidationError(errors)
    return ret
