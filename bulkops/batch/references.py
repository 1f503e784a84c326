"""References to earlier responses in a batch: ``{id.body.path}``.

A reference names a request of the batch by its id and a path into the JSON body of
its response: ``{c.body.id}``, ``{c.body.email}``, ``{c.body.results.0.id}``
(``results`` is a list, ``0`` its first item); ``{c.body}`` is the whole body.

- In a string value of a request body (at any depth), a string that is exactly one
  reference becomes the referenced value with its JSON type (a number stays a
  number, an object an object); a reference inside longer text is replaced by the
  value as text (strings as they are, anything else as JSON).
- In a url, the value is inserted as text, percent-encoded as one path segment or
  one query value, so a value can never add segments or query parameters.

Only text shaped ``{<id>.body...}`` is a reference, with ``<id>`` as batch ids are
spelled (letters, digits, ``_`` and ``-``); other braces are left alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..envelope import json_type

ID_CHARACTERS = r"[A-Za-z0-9_-]{1,64}"
REFERENCE = re.compile(r"\{(" + ID_CHARACTERS + r")\.body((?:\.[^.{}]+)*)\}")

#: ``lookup(request_id)`` -> the parsed body of that request's response.
Lookup = Callable[[str], Any]


class UnresolvedReference(Exception):
    """A reference whose value is missing: its request answers 424 with ``message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Reference:
    text: str  # as written, braces included
    request_id: str
    path: tuple[str, ...]


def _reference(match: re.Match[str]) -> Reference:
    path = tuple(match.group(2).split(".")[1:]) if match.group(2) else ()
    return Reference(text=match.group(0), request_id=match.group(1), path=path)


def references_in(value: Any) -> Iterator[Reference]:
    """Every reference in ``value``: a string, or the strings of a JSON value at any depth."""
    stack = [value]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "{" in value:
                yield from (_reference(m) for m in REFERENCE.finditer(value))
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def has_references(value: Any) -> bool:
    return next(references_in(value), None) is not None


def value_of(reference: Reference, lookup: Lookup) -> Any:
    """The value ``reference`` points at, or ``UnresolvedReference`` saying what is missing."""
    value = lookup(reference.request_id)
    for position, step in enumerate(reference.path):
        reached = ".".join((reference.request_id, "body", *reference.path[:position]))
        if isinstance(value, dict):
            if step not in value:
                problem = f"{reached} has no member {step!r}"
            else:
                value = value[step]
                continue
        elif isinstance(value, list):
            if not (step.isascii() and step.isdigit()):
                problem = f"{reached} is a list, so {step!r} must be an index (0, 1, ...)"
            elif int(step) >= len(value):
                problem = f"{reached} has {len(value)} items, so there is no item {step}"
            else:
                value = value[int(step)]
                continue
        else:
            problem = f"{reached} is {json_type(value)}, which has no member {step!r}"
        raise UnresolvedReference(f"The reference {reference.text} has no value: {problem}.")
    return value


def as_text(value: Any) -> str:
    """A value inserted into longer text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def substitute(value: Any, lookup: Lookup) -> Any:
    """``value`` (a request body) with every reference in its strings replaced."""
    if isinstance(value, str):
        if "{" not in value:
            return value
        whole = REFERENCE.fullmatch(value)
        if whole is not None:
            return value_of(_reference(whole), lookup)
        return REFERENCE.sub(lambda m: as_text(value_of(_reference(m), lookup)), value)
    if isinstance(value, dict):
        return {key: substitute(item, lookup) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, lookup) for item in value]
    return value


def substitute_url(url: str, lookup: Lookup) -> str:
    """``url`` with every reference replaced by its value, percent-encoded."""
    return REFERENCE.sub(lambda m: quote(as_text(value_of(_reference(m), lookup)), safe=""), url)
