"""The columns an import expects, described from the model's serializer.

The upload page lists them (name, required or not, format, an example) and the
template download is a file with exactly these headers, so what staff read, what
they download and what the engine accepts come from one place: the serializer.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from django.core.validators import MaxLengthValidator, MinValueValidator, RegexValidator
from django.db import models
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.relations import RelatedField, SlugRelatedField

from bulkops.engine.readers.headers import ID_FIELD, FieldIndex, column_letters, normalise_header

TEMPLATE_FORMATS = ("csv", "xlsx")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


@dataclass(frozen=True)
class ExpectedColumn:
    name: str
    label: str  # the verbose name, when it differs from the name
    required: str  # "required", "optional", "key" (names the row) or "id"
    format: str
    example: str

    @property
    def is_required(self) -> bool:
        return self.required in ("required", "key")


def import_columns(bulk_model: Any) -> list[str]:
    """The header row of a template and of an export: the serializer's writable
    fields in its order, plus ``id`` for a model without a natural key (the only
    way its rows can be named for an update)."""
    index = FieldIndex(bulk_model.serializer_class())
    names = [name for name in index.fields if name != ID_FIELD]
    if not bulk_model.natural_key:
        names.insert(0, ID_FIELD)
    return names


def expected_columns(bulk_model: Any) -> list[ExpectedColumn]:
    serializer = bulk_model.serializer_class()
    index = FieldIndex(serializer)
    model = bulk_model.model
    out = []
    for name in import_columns(bulk_model):
        field = index.fields[name]
        label = str(field.label) if field.label else ""
        if normalise_header(label) == normalise_header(name):
            label = ""
        out.append(
            ExpectedColumn(
                name=name,
                label=label,
                required=_requirement(name, field, bulk_model.natural_key),
                format=describe_format(field, _model_field(model, name)),
                example=example_value(field, _model_field(model, name)),
            )
        )
    return out


def _model_field(model: type[models.Model], name: str) -> models.Field | None:
    try:
        return model._meta.get_field(name)  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - a serializer-only field
        return None


def _requirement(name: str, field: serializers.Field, natural_key: tuple[str, ...]) -> str:
    if name == ID_FIELD:
        return "id"
    if name in natural_key:
        return "key"
    return "required" if field.required else "optional"


def _min_value(field: serializers.Field, model_field: models.Field | None) -> Any:
    value = getattr(field, "min_value", None)
    if value is None and model_field is not None:
        for validator in model_field.validators:
            if isinstance(validator, MinValueValidator):
                value = validator.limit_value
    return value


def describe_format(field: serializers.Field, model_field: models.Field | None = None) -> str:
    """What a cell of ``field`` must hold, in a few words."""
    minimum = _min_value(field, model_field)
    at_least = f", {minimum} or more" if minimum is not None else ""
    if isinstance(field, SlugRelatedField):
        related = field.queryset.model._meta if field.queryset is not None else None
        what = related.verbose_name if related else "object"
        slug = related.get_field(field.slug_field).verbose_name if related else field.slug_field
        return f"the {slug} of an existing {what}"
    if isinstance(field, RelatedField):
        return "the id of an existing object"
    if isinstance(field, serializers.BooleanField):
        return "yes/no, true/false or 1/0"
    if isinstance(field, serializers.ChoiceField):
        return "one of: " + ", ".join(str(key) for key in field.choices)
    if isinstance(field, serializers.IntegerField):
        return f"whole number{at_least}"
    if isinstance(field, serializers.DecimalField):
        places = field.decimal_places
        return f"number with up to {places} decimal places{at_least}"
    if isinstance(field, serializers.FloatField):
        return f"number{at_least}"
    if isinstance(field, serializers.DateTimeField):
        return "date and time, YYYY-MM-DD HH:MM (UTC unless an offset is given)"
    if isinstance(field, serializers.DateField):
        return "date, YYYY-MM-DD or a spreadsheet date"
    if isinstance(field, serializers.EmailField):
        text = "email address"
    elif isinstance(field, serializers.CharField):
        max_length = getattr(field, "max_length", None)
        text = f"text, up to {max_length} characters" if max_length else "text"
    else:
        text = "text"
    help_text = str(getattr(field, "help_text", "") or "")
    if help_text:
        text += f" ({help_text.rstrip('.')})"
    elif model_field is not None and any(
        isinstance(v, RegexValidator) for v in model_field.validators
    ):
        text += " in the expected pattern"
    return text


def example_value(field: serializers.Field, model_field: models.Field | None = None) -> str:
    """A value a cell of ``field`` could hold."""
    if isinstance(field, SlugRelatedField) and field.queryset is not None:
        found = field.queryset.order_by().values_list(field.slug_field, flat=True).first()
        return str(found) if found is not None else ""
    if isinstance(field, serializers.BooleanField):
        return "yes"
    if isinstance(field, serializers.ChoiceField):
        return str(next(iter(field.choices), ""))
    if isinstance(field, serializers.IntegerField):
        minimum = _min_value(field, model_field)
        return str(max(5, minimum or 0))
    if isinstance(field, serializers.DecimalField):
        return "19.99"
    if isinstance(field, serializers.DateTimeField):
        return "2025-03-01 14:30"
    if isinstance(field, serializers.DateField):
        return "2025-03-01"
    if isinstance(field, serializers.EmailField):
        return "ann@example.com"
    if isinstance(field, serializers.CharField):
        help_text = str(getattr(field, "help_text", "") or "")
        if "e.g." in help_text:
            return help_text.rsplit("e.g.", 1)[1].strip(" .")
        max_length = getattr(field, "max_length", None)
        for validator in getattr(model_field, "validators", []):
            if isinstance(validator, MaxLengthValidator):
                max_length = validator.limit_value
        text = f"Example {field.field_name}" if field.field_name else "Example"
        return text[:max_length] if max_length else text
    if field.default is not empty and not callable(field.default):
        return str(field.default)
    return ""


def template_file(bulk_model: Any, fmt: str) -> bytes:
    """An empty import file for ``bulk_model``: the header row alone (CSV), or the
    header row plus a "Columns" sheet describing each column (XLSX)."""
    headers = import_columns(bulk_model)
    if fmt == "csv":
        buffer = io.StringIO()
        csv.writer(buffer).writerow(headers)
        return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8")
    if fmt != "xlsx":
        raise ValueError(f"Templates are {' or '.join(TEMPLATE_FORMATS)}, not {fmt!r}.")
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = str(bulk_model.model._meta.verbose_name_plural)[:31]
    sheet.append(headers)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for position, header in enumerate(headers):
        sheet.column_dimensions[column_letters(position)].width = max(12, len(header) + 4)
    described = book.create_sheet("Columns")
    described.append(["column", "required", "format", "example"])
    for cell in described[1]:
        cell.font = Font(bold=True)
    for column in expected_columns(bulk_model):
        described.append([column.name, column.required, column.format, column.example])
    for letter, width in zip("ABCD", (16, 10, 60, 24), strict=True):
        described.column_dimensions[letter].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
