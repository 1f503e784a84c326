"""A row's errors: DRF's shape (field -> messages), built and merged the same way everywhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rest_framework.settings import api_settings

if TYPE_CHECKING:
    from .staged import StagedRow

RowErrors = dict[str, Any]


def non_field_key() -> str:
    """Where errors that belong to no field go (DRF's ``NON_FIELD_ERRORS_KEY``, read per
    call so a project's setting and ``override_settings`` apply)."""
    return api_settings.NON_FIELD_ERRORS_KEY


def plain_errors(detail: Any) -> Any:
    """DRF's ``ErrorDetail`` tree as plain strings, lists and dicts."""
    if isinstance(detail, Mapping):
        return {str(k): plain_errors(v) for k, v in detail.items()}
    if isinstance(detail, list | tuple):
        return [plain_errors(v) for v in detail]
    return str(detail)


def merged(errors: RowErrors | None, extra: Mapping[str, Any]) -> RowErrors:
    """``errors`` with the messages of ``extra`` appended, as a new dict.

    A message a field already has is not added again, so merging the same errors
    twice (a retried step) changes nothing.
    """
    out: RowErrors = {
        field: list(messages) if isinstance(messages, list) else messages
        for field, messages in (errors or {}).items()
    }
    for field, messages in extra.items():
        kept = out.setdefault(field, [])
        if not isinstance(kept, list):  # a nested serializer's errors: keep both
            kept = out[field] = [kept]
        for message in messages:
            if message not in kept:
                kept.append(message)
    return out


def label_of(position: int, *, is_file_row: bool) -> str:
    """How a message names another row: by its spreadsheet row number, or its index."""
    return f"row {position}" if is_file_row else f"item {position}"


def add_error(row: StagedRow, field: str, message: str) -> None:
    """Add ``message`` to ``row``'s errors of ``field``."""
    if row.errors is None:
        row.errors = {}
    row.errors.setdefault(field, []).append(message)
