"""Rows as JSON text in the database, for any worker to read back exactly.

The rows a reader hands over (``(values, row, ref, errors)``) may hold what JSON lacks
(dates, Decimals) or what PostgreSQL refuses in text (NUL, lone surrogates): those go
through the engine's tagged form (``bulkops.engine.tagged``), the same the staged
chunks use. Rows that plain JSON carries as they are (every CSV) skip the tagging, which
costs a walk over every value; the first character of the text says which form follows.
``jsonb_safe`` shapes values for the JSON columns shown to users (row errors): NUL
replaced, dates and Decimals as text.

Every chunk goes through here a few times, so the JSON work is orjson's (several times
faster than ``json``) where it gives exactly what ``json`` gives. orjson writes only
data made of dicts, lists and values of exactly the JSON types — not NaN (it would
write ``null``), no enum member or UUID (it writes them, ``json`` refuses them), no
integer past 64 bits — and reads only what it wrote (it would read a 20-digit integer
as a float); the text says which wrote it. The rest goes through ``json`` as before.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Iterable
from itertools import chain
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
_NUMBERS = _SCALARS | {float}
_SEQUENCES = frozenset({list, tuple})
_first = operator.itemgetter(0)
_third = operator.itemgetter(2)
_fifth = operator.itemgetter(4)


def _refuse(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def _orjson(data: Any) -> str | None:
    try:
        return orjson.dumps(data, default=_refuse, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return None


def compact(data: Any) -> str:
    """``json.dumps(data, separators=(",", ":"))`` for data of dicts with text keys, lists,
    and values of exactly the types text, integer, boolean, None and finite float (the
    batch keys): orjson writes what it can, ``json`` the rest. Any JSON reader reads it."""
    text = _orjson(data)
    return text if text is not None else json.dumps(data, separators=(",", ":"))


def dumps_data(data: Any) -> str:
    """``data`` (as ``compact`` takes it: a staged chunk that is ``plain_staged``) as
    text for ``loads_data``."""
    text = _orjson(data)
    return OWN + text if text is not None else json.dumps(data, separators=(",", ":"))


def loads_data(text: str) -> Any:
    """What ``dumps_data`` wrote (or plain JSON text)."""
    if text[:1] == OWN:
        return orjson.loads(text[1:])
    return json.loads(text)


def _all_plain(values: Iterable[Any]) -> bool:
    """Whether every value is text, an integer, a boolean, None or a finite float (what
    orjson writes as json does); looked at as a set of types, in C."""
    cells = list(values)
    kinds = set(map(type, cells))
    if kinds <= _SCALARS:
        return True
    if not kinds <= _NUMBERS:
        return False
    return all(map(math.isfinite, (v for v in cells if type(v) is float)))


def _plain_rows(rows: Any) -> bool:
    """Reader rows (values, row, ref, errors) whose values and refs are plain (every CSV
    row): a chunk's rows cost well under 1 ms."""
    if type(rows) is not list or not rows:
        return False
    if not set(map(type, rows)) <= _SEQUENCES or set(map(len, rows)) != {4}:
        return False
    values = list(map(_first, rows))
    if set(map(type, values)) != {dict}:
        return False
    return _all_plain(chain(chain.from_iterable(map(dict.values, values)), map(_third, rows)))


def plain_staged(data: dict[str, Any]) -> bool:
    """Whether a staged chunk's JSON data (``StagedChunk.to_json``) is what
    ``dumps_data`` may hand to orjson. Its rows' refs and errors are tagged (plain by
    construction); their pks, and the values of fields without a codec of their own
    (text, integers, a JSONField's data), are as the serializer gave them: those are
    checked."""
    rows = data["rows"]
    values = (
        row[5].values() if type(row[5]) is dict else row[5] or () for row in rows
    )  # a list by the chunk's columns, or a dict, or None
    return _all_plain(chain(map(_fifth, rows), chain.from_iterable(values)))


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
