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

from ..compat import READ_ONLY_DEFAULTS, WRITABLE_FIELDS, read_only_defaults
from .lookups import SURROGATES
from .outcome import noted_list, run_validators_noting


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
        return read_only_defaults(serializer_class, self)

    attrs: dict[str, Any] = {
        "__module__": serializer_class.__module__,
        WRITABLE_FIELDS: property(lambda self: self._bulkops_writable),
        READ_ONLY_DEFAULTS: _read_only_defaults,
        "_bulkops_columns": None,
    }
    if serializer_class.to_internal_value is serializers.Serializer.to_internal_value:
        attrs["to_internal_value"] = _to_internal_value
    if serializer_class.run_validators is serializers.Serializer.run_validators:
        attrs["run_validators"] = noting_run_validators
    return type(serializer_class.__name__, (serializer_class,), attrs)


def noting_run_validators(self: Any, value: Any) -> None:
    """``Serializer.run_validators``: read-only defaults merged in, then every validator
    as DRF runs them, unique-together slots noted (``outcome``). With no validator at all
    (most serializers) there is nothing to run."""
    if not self.validators:
        return
    if isinstance(value, dict):
        to_validate = getattr(self, READ_ONLY_DEFAULTS)()
        to_validate.update(value)
    else:
        to_validate = value
    run_validators_noting(self, to_validate, noted_list(self))


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
    """``Serializer.to_internal_value`` with the per-row lookups done once (see above);
    a row of the chunk whose columns were validated at once (``columns``) is answered
    from them."""
    columns = self._bulkops_columns
    if columns is not None:
        index = columns.index_of(data)
        if index is not None:
            return columns.to_internal_value(index)
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
