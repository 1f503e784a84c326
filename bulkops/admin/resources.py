"""django-import-export resources whose columns are the import's columns.

``resource_for(bulk_model)`` builds a ``ModelResource`` from the same serializer
the import validates with: the same column names (the serializer's field
names), related objects by the same natural keys (a ``SlugRelatedField``'s
``slug_field`` becomes a ``ForeignKeyWidget`` on that field), and values written
so the engine reads them back unchanged. An exported file can therefore be
edited and uploaded again as an upsert without touching a header.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.utils import timezone
from import_export import fields, resources, widgets
from rest_framework import serializers
from rest_framework.relations import SlugRelatedField

from .columns import import_columns


class IsoDateTimeWidget(widgets.Widget):
    """Date-times as ISO 8601 text in UTC (``2025-03-01T14:30:00.250000+00:00``).

    Spreadsheet date cells hold no time zone and round to the millisecond;
    text keeps the exact instant, and the serializer parses it as it is.
    """

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        if not isinstance(value, datetime.datetime):
            return ""
        if timezone.is_aware(value):
            value = value.astimezone(datetime.UTC)
        return value.isoformat()

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> Any:
        if value in (None, ""):
            return None
        if isinstance(value, datetime.datetime):
            return value
        return serializers.DateTimeField().to_internal_value(value)


class PlainDecimalWidget(widgets.DecimalWidget):
    """Decimals as the serializer writes them ("10.00"), never as a float."""

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        if value is None:
            return ""
        return format(value, "f")


def _field_for(name: str, field: serializers.Field) -> fields.Field | None:
    if isinstance(field, SlugRelatedField) and field.queryset is not None:
        widget = widgets.ForeignKeyWidget(field.queryset.model, field.slug_field)
        return fields.Field(attribute=name, column_name=name, widget=widget)
    if isinstance(field, serializers.DateTimeField):
        return fields.Field(attribute=name, column_name=name, widget=IsoDateTimeWidget())
    if isinstance(field, serializers.DecimalField):
        return fields.Field(attribute=name, column_name=name, widget=PlainDecimalWidget())
    return None


def resource_for(bulk_model: Any) -> type[resources.ModelResource]:
    """A ModelResource exporting ``bulk_model``'s import columns."""
    serializer = bulk_model.serializer_class()
    columns = import_columns(bulk_model)
    attrs: dict[str, Any] = {}
    for name in columns:
        declared = _field_for(name, serializer.fields.get(name))
        if declared is not None:
            attrs[name] = declared
    model = bulk_model.model
    attrs["Meta"] = type(
        "Meta",
        (),
        {
            "model": model,
            "fields": tuple(columns),
            "export_order": tuple(columns),
            "import_id_fields": tuple(bulk_model.natural_key or ("id",)),
            "name": f"{model._meta.verbose_name_plural} (import columns)",
        },
    )
    return type(f"{model.__name__}BulkResource", (resources.ModelResource,), attrs)
