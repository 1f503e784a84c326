"""New rows as PostgreSQL ``COPY`` text, made a column at a time.

psycopg's ``Copy.write_row`` adapts every value of every row through its dumpers; for
the plain columns a bulk import writes (text, integers, booleans, finite Decimals,
dates, NULL) the same text comes out of one C-level ``map`` per column: ``str``,
``isoformat``, ``t``/``f``, and the escapes of COPY's text format. A column holding
anything else (or text PostgreSQL refuses: NUL, lone surrogates) makes ``copy_text``
answer ``None``, and the rows go through psycopg as before, so the database sees and
refuses exactly what it would have.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from .lookups import SURROGATES

# COPY's text format: backslash escapes for the delimiter, line ends and the backslash
# (and the other control escapes psycopg writes).
_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        "\t": "\\t",
        "\n": "\\n",
        "\r": "\\r",
        "\b": "\\b",
        "\f": "\\f",
        "\v": "\\v",
    }
)
_NULL = "\\N"
_MISSING = object()


def _text(column: list) -> list[str] | None:
    kinds = set(map(type, column))
    nullable = type(None) in kinds
    kinds.discard(type(None))
    if not kinds:
        return [_NULL] * len(column)
    if len(kinds) > 1:
        return None
    (kind,) = kinds
    present = [v for v in column if v is not None] if nullable else column
    if kind is str:
        joined = "".join(present)
        if "\x00" in joined or SURROGATES.search(joined) is not None:
            return None
        render: Any = str.translate
        out = [render(v, _ESCAPES) for v in present]
    elif kind is int:
        out = list(map(str, present))
    elif kind is bool:
        out = ["t" if v else "f" for v in present]
    elif kind is Decimal:
        if not all(map(Decimal.is_finite, present)):
            return None
        out = list(map(str, present))
    elif kind is datetime.date:
        out = list(map(datetime.date.isoformat, present))
    else:
        return None
    if not nullable:
        return out
    rendered = iter(out)
    return [_NULL if v is None else next(rendered) for v in column]


def copy_text(ids: list[Any], rows_values: list[dict[str, Any]], plan: list[tuple]) -> str | None:
    """The rows as COPY text, each line its primary key from ``ids`` then the columns of
    ``plan`` (``(attname, field, direct)``: a missing value takes the field's default);
    ``None`` when a column holds what only psycopg's adapters should render."""
    columns = [_text(list(ids))]
    for attname, field, direct in plan:
        if not direct:
            return None
        column = [values.get(attname, _MISSING) for values in rows_values]
        if any(v is _MISSING for v in column):
            column = [field.get_default() if v is _MISSING else v for v in column]
        columns.append(_text(column))
    if any(column is None for column in columns):
        return None
    lines = map("\t".join, zip(*columns, strict=True))  # type: ignore[arg-type]
    return "\n".join(lines) + "\n"
