"""Rows as JSON text in the database, for any worker to read back exactly.

The rows a reader hands over (``(values, row, ref, errors)``) may hold what JSON lacks
(dates, Decimals) or what PostgreSQL refuses in text (NUL, lone surrogates): those go
through the engine's tagged form (``bulkops.engine.tagged``), the same the staged
chunks use. Rows that plain JSON carries as they are (every CSV) skip the tagging, which
costs a walk over every value; the first character of the text says which form follows.
``jsonb_safe`` shapes values for the JSON columns shown to users (row errors): NUL
replaced, dates and Decimals as text.
"""

from __future__ import annotations

import json
from typing import Any

from bulkops.engine import tagged
from bulkops.engine.collection import no_collection

PLAIN = "p"
TAGGED = "t"


def dumps(rows: Any) -> str:
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
        if text[:1] == PLAIN:
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
