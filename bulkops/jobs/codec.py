"""Rows as JSON text in the database, for any worker to read back exactly.

The rows a reader hands over (``(values, row, ref, errors)``) may hold what JSON lacks
(dates, Decimals) or what PostgreSQL refuses in text (NUL, lone surrogates): those go
through the engine's tagged form (``bulkops.engine.tagged``), the same the staged
chunks use. Rows that plain JSON carries as they are (every CSV) skip the tagging, which
costs a walk over every value; the first character of the text says which form follows.
``jsonb_safe`` shapes values for the JSON columns shown to users (row errors): NUL
replaced, dates and Decimals as text.

Every chunk goes through here a few times, so the JSON work is orjson's (several times
faster than ``json``) where it gives exactly what ``json`` gives: orjson writes only
data it writes as ``json`` does (not NaN, which it would write as ``null``; no type it
writes and ``json`` refuses: UUIDs, enums, dates; no integer past 64 bits), and reads
only what it wrote (it would read a 20-digit integer as a float); the text says which
wrote it. The rest goes through ``json`` as before.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import orjson

from bulkops.engine import tagged
from bulkops.engine.collection import no_collection

PLAIN = "p"  # json
TAGGED = "t"  # json, of tagged values
OWN = "o"  # orjson

# Subclasses (an IntEnum, a SafeString), dates and dataclasses: json's rules, not orjson's.
_OPTIONS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
_SCALARS = frozenset({str, int, bool, type(None)})


def _refuse(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def _orjson(data: Any) -> str | None:
    try:
        return orjson.dumps(data, default=_refuse, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return None


def compact(data: Any) -> str:
    """``json.dumps(data, separators=(",", ":"))`` for data of dicts with text keys, lists,
    text, integers, booleans, None and finite floats only (the batch keys): orjson
    writes what it can, ``json`` the rest. Any JSON reader reads it back."""
    text = _orjson(data)
    return text if text is not None else json.dumps(data, separators=(",", ":"))


def dumps_data(data: Any) -> str:
    """``data`` (as ``compact`` takes it) as text for ``loads_data``."""
    text = _orjson(data)
    return OWN + text if text is not None else json.dumps(data, separators=(",", ":"))


def loads_data(text: str) -> Any:
    """What ``dumps_data`` wrote (or plain JSON text)."""
    if text[:1] == OWN:
        return orjson.loads(text[1:])
    return json.loads(text)


def _plain(value: Any) -> bool:
    kind = type(value)
    return kind in _SCALARS or (kind is float and math.isfinite(value))


def _plain_rows(rows: Any) -> bool:
    """Reader rows (values, row, ref, errors) whose values and refs are text, integers,
    booleans, None or finite floats (every CSV row): what orjson writes as json does."""
    if type(rows) is not list:
        return False
    for row in rows:
        if type(row) not in (list, tuple) or len(row) != 4:
            return False
        values = row[0]
        if type(values) is not dict or not _plain(row[2]):
            return False
        for value in values.values():
            if type(value) not in _SCALARS and not _plain(value):
                return False
    return True


# Model fields whose staged values are text, numbers, booleans or None as they are, or
# are written as such by the staged form's own field codecs (bulkops.engine.staged).
_STAGED_PLAIN = frozenset(
    {
        "AutoField", "BigAutoField", "SmallAutoField", "BigIntegerField", "IntegerField",
        "SmallIntegerField", "PositiveBigIntegerField", "PositiveIntegerField",
        "PositiveSmallIntegerField", "BooleanField", "NullBooleanField", "CharField",
        "TextField", "SlugField", "EmailField", "URLField", "GenericIPAddressField",
        "IPAddressField", "FilePathField", "DecimalField", "DateTimeField", "DateField",
        "TimeField", "DurationField", "UUIDField", "BinaryField", "FloatField",
        "ForeignKey", "OneToOneField",
    }
)  # fmt: skip


@functools.cache
def stages_plainly(model: type) -> bool:
    """Whether a staged chunk of ``model`` (``StagedChunk.to_json``) holds only what
    ``dumps_data`` may hand to orjson: no JSONField (its values may hold NaN), no field
    of a type it does not know."""
    return all(
        f.get_internal_type() in _STAGED_PLAIN
        for f in model._meta.concrete_fields  # type: ignore[attr-defined]
    )


def dumps(rows: Any) -> str:
    if _plain_rows(rows):
        # orjson refuses lone surrogates, and writes NUL escaped, as json does.
        text = _orjson(rows)
        if text is not None:
            return OWN + text
    try:
        text = json.dumps(rows, separators=(",", ":"), ensure_ascii=False)
        if "\x00" not in text:
            text.encode("utf-8")  # a lone surrogate cannot be stored as text
            return PLAIN + text
    except (TypeError, ValueError, UnicodeEncodeError):
        pass
    return TAGGED + json.dumps(tagged.encode(rows), separators=(",", ":"), ensure_ascii=False)


def loads(text: str) -> Any:
    with no_collection():
        marker = text[:1]
        if marker == OWN:
            return orjson.loads(text[1:])
        if marker == PLAIN:
            return json.loads(text[1:])
        return tagged.decode(json.loads(text[1:]))


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
