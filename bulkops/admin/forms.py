"""The forms of the admin import: upload, column mapping, cell edits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.core.validators import MaxValueValidator

from bulkops.conf import bulkops_settings
from bulkops.engine.readers import FORMATS, resolve_format
from bulkops.engine.readers.files import describe_size
from bulkops.exceptions import UnreadableFile

from .mapping import FilePreview

UPLOAD_FORMATS = ("csv", "tsv", "xlsx", "xls", "ods", "json")
IGNORE = ""


def mode_choices(model: Any, natural_key: Sequence[str]) -> dict[str, str]:
    """Each mode with a one-line explanation, in the order the form offers them."""
    opts = model._meta
    key = " and ".join(natural_key) if natural_key else "id"
    return {
        "create": f"Create — add every row as a new {opts.verbose_name}.",
        "update": (
            f"Update — change existing {opts.verbose_name_plural}, found by {key}; "
            "empty cells leave a value as it is."
        ),
        "upsert": (
            f"Create or update — update the {opts.verbose_name_plural} whose {key} exists, "
            "add the others."
        ),
    }


ATOMIC_CHOICES = {
    "all": "All or nothing — one failed row and nothing is written.",
    "chunk": "Each chunk all or nothing — a chunk with a failed row is not written; "
    "the other chunks are.",
    "none": "Every valid row — failed rows are reported, all others are written.",
}


class UploadForm(forms.Form):
    """The first step: a file and the options of the import.

    ``modes`` are the modes the user may choose (their permissions decide, see
    ``BulkImportMixin.get_bulk_import_modes``).
    """

    file = forms.FileField(
        label="Spreadsheet",
        error_messages={
            "required": "Choose the file to import.",
            "empty": "The file is empty; its first row must hold the column names.",
        },
        widget=forms.ClearableFileInput(
            attrs={"accept": ",".join(f".{fmt}" for fmt in UPLOAD_FORMATS)}
        ),
    )
    mode = forms.ChoiceField(label="Mode", widget=forms.RadioSelect)
    atomic = forms.ChoiceField(
        label="Transactions",
        widget=forms.RadioSelect,
        choices=list(ATOMIC_CHOICES.items()),
    )
    chunk_size = forms.IntegerField(
        label="Chunk size",
        min_value=1,
        help_text="Rows validated and written together.",
    )
    validate_only = forms.BooleanField(
        label="Validate only",
        required=False,
        help_text="Check every row and report what would happen; write nothing.",
    )
    sheet = forms.CharField(
        label="Sheet",
        required=False,
        max_length=200,
        help_text="The workbook sheet to read; the first one when empty.",
    )

    def __init__(
        self,
        *args: Any,
        modes: dict[str, str],
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault(
            "initial",
            {
                "mode": next(iter(modes), None),
                "atomic": bulkops_settings.DEFAULT_ATOMIC,
                "chunk_size": bulkops_settings.CHUNK_SIZE,
            },
        )
        super().__init__(*args, **kwargs)
        self.fields["mode"].choices = list(modes.items())
        limit = bulkops_settings.MAX_CHUNK_SIZE
        chunk = self.fields["chunk_size"]
        chunk.max_value = limit
        chunk.validators.append(MaxValueValidator(limit))
        chunk.widget.attrs.update({"max": limit, "min": 1})
        chunk.help_text = f"Rows validated and written together (1 to {limit:,})."
        supported = ", ".join(f".{fmt}" for fmt in UPLOAD_FORMATS)
        self.fields["file"].help_text = (
            f"{supported}; at most {describe_size(bulkops_settings.MAX_UPLOAD_BYTES)} "
            f"and {bulkops_settings.MAX_ROWS:,} rows."
        )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        name = upload.name or ""
        try:
            fmt = resolve_format(name, None)
        except UnreadableFile as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from None
        if fmt not in FORMATS:  # pragma: no cover - resolve_format refuses these
            raise forms.ValidationError("This type of file cannot be imported.")
        limit = bulkops_settings.MAX_UPLOAD_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                f"The file is {describe_size(upload.size)}, more than the limit of "
                f"{describe_size(limit)}; split it into smaller files.",
                code="file_too_large",
            )
        return upload


class MappingForm(forms.Form):
    """One choice per file column: the field it fills, or ignore it.

    Field names are ``column_<position>`` (the 0-based position in the header row);
    ``mapping()`` gives ``{file header: field name or None}``.
    """

    def __init__(
        self,
        *args: Any,
        preview_columns: list[dict[str, Any]],
        field_choices: list[tuple[str, str]],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.preview_columns = preview_columns
        choices = [(IGNORE, "— ignore this column —"), *field_choices]
        for column in preview_columns:
            name = f"column_{column['position']}"
            self.fields[name] = forms.ChoiceField(
                label=column["header"],
                choices=choices,
                required=False,
                initial=column.get("suggested") or IGNORE,
            )
            self.fields[name].widget.attrs["aria-describedby"] = f"samples_{column['position']}"

    def rows(self) -> list[dict[str, Any]]:
        """What the template shows per column: its header, samples, select, suggestion."""
        return [
            {**column, "field": self[f"column_{column['position']}"]}
            for column in self.preview_columns
        ]

    def mapping(self) -> dict[str, str | None]:
        return {
            column["header"]: self.cleaned_data.get(f"column_{column['position']}") or None
            for column in self.preview_columns
        }


def preview_to_session(preview: FilePreview) -> list[dict[str, Any]]:
    """The columns of a ``FilePreview`` as plain data (kept in the session between steps)."""
    return [
        {
            "position": column.position,
            "header": column.header,
            "label": column.label,
            "samples": column.samples,
            "matched": column.matched,
        }
        for column in preview.columns
    ]


def describe_suggestion(reason: str) -> str:
    return {
        "name": "matches the field's name",
        "remembered": "as mapped last time",
        "used before": "chosen before for this column",
        "similar": "similar name",
        "failed rows": "a column of the failed-rows download; ignored",
    }.get(reason, "")
