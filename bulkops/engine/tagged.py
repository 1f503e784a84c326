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
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _encode_text(value: str) -> Any:
    if _UNSTORABLE.search(value) is None:
        return value
    raw = value.encode("utf-8", "surrogatepass")
    return {"$text": base64.b64encode(raw).decode("ascii")}


def _plain_key(key: Any) -> bool:
    return type(key) is str and not key.startswith("$") and _UNSTORABLE.search(key) is None


def encode(value: Any) -> Any:
    """``value`` as JSON-safe data (see the module docstring)."""
    kind = type(value)
    if kind is str:
        return _encode_text(value)
    if value is None or kind is bool or kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, dict):
        if all(_plain_key(k) for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"$dict": [[encode(k), encode(v)] for k, v in value.items()]}
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
        return _encode_text(str(value))
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
}


def decode(value: Any) -> Any:
    """The value ``encode`` was given."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, inner),) = value.items()
            decoder = _DECODERS.get(tag)
            if decoder is not None:
                return decoder(inner)
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value
