"""Arbitrary row values as plain JSON that any JSON reader and PostgreSQL ``jsonb`` take.

A row's source values (cells of a spreadsheet, items of a request) hold what JSON
lacks — dates, Decimals, times — and may hold what ``jsonb`` refuses: NUL characters,
lone surrogates, NaN. ``encode`` writes those as one-key objects tagged with a ``$``
name (``{"$date": "2024-05-01"}``); ``decode`` reads them back, so
``decode(json.loads(json.dumps(encode(v)))) == v``. Plain values pass unchanged:
most rows encode to themselves.
"""

from __future__ import annotations

import base64
import datetime
import math
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

# Text JSON can carry but PostgreSQL jsonb cannot: NUL, and lone UTF-16 surrogates.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _encode_text(value: str) -> Any:
    raw = value.encode("utf-8", "surrogatepass")
    return {"$text": base64.b64encode(raw).decode("ascii")}


def _encode_dict(value: dict) -> Any:
    # The common row: text keys, text or number values; spelled out, it costs a
    # fraction of a call per value.
    search = UNSTORABLE.search
    out = {}
    for key, item in value.items():
        if type(key) is not str or key[:1] == "$" or search(key) is not None:
            return {"$dict": [[encode(k), encode(v)] for k, v in value.items()]}
        kind = type(item)
        if kind is str:
            out[key] = item if search(item) is None else _encode_text(item)
        elif item is None or kind is int or kind is bool:
            out[key] = item
        else:
            out[key] = encode(item)
    return out


def is_plain_dict(value: Any) -> bool:
    """A dict ``encode`` keeps a dict: text keys, none tag-like or unstorable."""
    if type(value) is not dict:
        return False
    search = UNSTORABLE.search
    return all(type(k) is str and k[:1] != "$" and search(k) is None for k in value)


def encode_single(value: Any) -> Any:
    """``encode(value)``, never a JSON list (a list is wrapped: ``{"$value": [...]}``), for
    slots where a list means something else."""
    encoded = encode(value)
    return {"$value": encoded} if type(encoded) is list else encoded


def encode(value: Any) -> Any:
    """``value`` as JSON-safe data (see the module docstring)."""
    kind = type(value)
    if kind is str:
        return value if UNSTORABLE.search(value) is None else _encode_text(value)
    if value is None or kind is bool or kind is int:
        return value
    if kind is dict:
        return _encode_dict(value)
    if kind is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, dict):
        return _encode_dict(value)
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"$date": value.isoformat()}
    if isinstance(value, datetime.time):
        return {"$time": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {"$duration": value // datetime.timedelta(microseconds=1)}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    # Subclasses of the plain types (enum members, say) as their plain value.
    if isinstance(value, str):
        return encode(str(value))
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return encode(float(value))
    return {"$text": base64.b64encode(str(value).encode("utf-8", "surrogatepass")).decode("ascii")}


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "$text": lambda v: base64.b64decode(v).decode("utf-8", "surrogatepass"),
    "$float": float,
    "$decimal": Decimal,
    "$datetime": datetime.datetime.fromisoformat,
    "$date": datetime.date.fromisoformat,
    "$time": datetime.time.fromisoformat,
    "$duration": lambda v: datetime.timedelta(microseconds=v),
    "$uuid": uuid.UUID,
    "$bytes": base64.b64decode,
    "$dict": lambda pairs: {decode(k): decode(v) for k, v in pairs},
    "$value": lambda inner: decode(inner),
}


def decode(value: Any) -> Any:
    """The value ``encode`` was given."""
    kind = type(value)
    if kind is dict:
        if len(value) == 1:
            ((tag, inner),) = value.items()
            decoder = _DECODERS.get(tag)
            if decoder is not None:
                return decoder(inner)
        out = {}
        for key, item in value.items():
            out[key] = item if type(item) in _PLAIN else decode(item)
        return out
    if kind is list:
        return [item if type(item) in _PLAIN else decode(item) for item in value]
    return value


JSON_PLAIN = frozenset({str, int, float, bool, type(None)})  # what decode leaves as it is
_PLAIN = JSON_PLAIN
