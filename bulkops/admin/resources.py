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
import io
from typing import Any

from django.utils import timezone
from import_export import fields, resources, widgets
from import_export.formats import base_formats
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
    """Decimals as numbers in workbooks and as plain text ("1234.50") in text files:
    never with the thousands separators of a locale, which the import would refuse."""

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        if value is None:
            return ""
        return value if kwargs.get("force_native_type") else format(value, "f")


class PlainIntegerWidget(widgets.IntegerWidget):
    """Whole numbers without a locale's thousands separators."""

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        if value is None:
            return ""
        return value if kwargs.get("force_native_type") else str(value)


def _field_for(name: str, field: serializers.Field) -> fields.Field | None:
    if isinstance(field, SlugRelatedField) and field.queryset is not None:
        widget = widgets.ForeignKeyWidget(field.queryset.model, field.slug_field)
        return fields.Field(attribute=name, column_name=name, widget=widget)
    if isinstance(field, serializers.DateTimeField):
        return fields.Field(attribute=name, column_name=name, widget=IsoDateTimeWidget())
    if isinstance(field, serializers.DecimalField):
        return fields.Field(attribute=name, column_name=name, widget=PlainDecimalWidget())
    if isinstance(field, serializers.IntegerField):
        return fields.Field(attribute=name, column_name=name, widget=PlainIntegerWidget())
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


class TextSafeXLSX(base_formats.XLSX):
    """XLSX export in which text is always text.

    tablib hands a cell value to openpyxl as is, and openpyxl stores a string that
    starts with ``=`` as a formula: a category named ``=SUM(A1)`` would come out as
    a formula (run when the file is opened, and empty when it is read back). Here
    every string is written as a string cell, so the file shows what the database
    holds, runs nothing, and imports back unchanged.
    """

    def export_data(self, dataset: Any, **kwargs: Any) -> bytes:
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.styles import Font
        from openpyxl.utils.exceptions import IllegalCharacterError

        book = Workbook(write_only=True)
        sheet = book.create_sheet(_sheet_title(dataset.title))
        bold = Font(bold=True)

        def cell(value: Any, *, header: bool = False) -> Any:
            out = WriteOnlyCell(sheet, value=value)
            if isinstance(value, str):
                out.data_type = "s"
            if header:
                out.font = bold
            return out

        try:
            if dataset.headers:
                sheet.append([cell(header, header=True) for header in dataset.headers])
            for row in dataset:
                sheet.append([cell(value) for value in row])
        except IllegalCharacterError:
            raise ValueError(
                "Some text holds control characters a workbook cannot store; export as CSV."
            ) from None
        out = io.BytesIO()
        book.save(out)
        return out.getvalue()


def _sheet_title(title: Any) -> str:
    # Sheet names: at most 31 characters, none of []:*?/\
    text = str(title or "Export")
    for char in "[]:*?/\\":
        text = text.replace(char, " ")
    return text[:31].strip() or "Export"
