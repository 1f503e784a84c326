"""Rows as JSON text in the database, for any worker to read back exactly.

Spreadsheet readers hand over dates, times and date-times, which JSON has no type for;
they are written as ``{"__bulkops_type__": "date", "v": "2024-05-01"}`` and turned back
into the same Python values when read. An input that itself holds the marker key is
written with every dict tagged, so nothing a user sends can pass for a typed value.
PostgreSQL's jsonb refuses the NUL character; ``jsonb_safe`` replaces it where values
go into JSON columns (error reports), never in the rows that are validated and written.
"""

from __future__ import annotations

import datetime
import json
import uuid
from decimal import Decimal
from typing import Any

TAG = "__bulkops_type__"

_DECODERS: dict[str, Any] = {
    "date": datetime.date.fromisoformat,
    "datetime": datetime.datetime.fromisoformat,
    "time": datetime.time.fromisoformat,
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "dict": lambda items: {key: value for key, value in items},
}


def _tag(value: Any) -> dict[str, Any]:
    if isinstance(value, datetime.datetime):
        return {TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, datetime.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, datetime.time):
        return {TAG: "time", "v": value.isoformat()}
    if isinstance(value, Decimal):
        return {TAG: "decimal", "v": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "v": str(value)}
    if isinstance(value, tuple | set | frozenset):
        return list(value)  # type: ignore[return-value]
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _tag_dicts(value: Any) -> Any:
    """Every dict as a tagged list of pairs, so a user's marker key stays data."""
    if isinstance(value, dict):
        return {TAG: "dict", "v": [[key, _tag_dicts(item)] for key, item in value.items()]}
    if isinstance(value, list | tuple):
        return [_tag_dicts(item) for item in value]
    return value


def dumps(value: Any) -> str:
    text = json.dumps(value, default=_tag, separators=(",", ":"), ensure_ascii=False)
    if TAG in text and _has_marker_key(value):
        text = json.dumps(
            _tag_dicts(value), default=_tag, separators=(",", ":"), ensure_ascii=False
        )
    return text


def _has_marker_key(value: Any) -> bool:
    if isinstance(value, dict):
        return TAG in value or any(_has_marker_key(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_has_marker_key(item) for item in value)
    return False


def _untag(obj: dict[str, Any]) -> Any:
    kind = obj.get(TAG)
    if kind is not None and len(obj) == 2 and "v" in obj and kind in _DECODERS:
        return _DECODERS[kind](obj["v"])
    return obj


def loads(text: str) -> Any:
    if TAG not in text:
        return json.loads(text)
    return json.loads(text, object_hook=_untag)


def jsonb_safe(value: Any) -> Any:
    """``value`` with NUL characters replaced (U+FFFD) and non-JSON types as text."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {jsonb_safe(str(key)): jsonb_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonb_safe(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return jsonb_safe(str(value))
