"""Unique constraints checked once per chunk instead of once per row.

A ``ModelSerializer`` puts a ``UniqueValidator`` on each unique field and a
``UniqueTogetherValidator`` for each unique set, each one query per row. Here they
come off the serializer and each becomes a ``UniqueCheck``: one query per chunk
against the database, and a key per row for duplicates inside the batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connections, models
from django.db.models.functions import Lower
from rest_framework import serializers
from rest_framework.validators import UniqueTogetherValidator, UniqueValidator

from .errors import non_field_key
from .lookups import filter_in, in_batches

Key = tuple[Any, ...]


@dataclass
class UniqueCheck:
    """One unique constraint: its model fields, the serializer fields its errors go
    to, the queryset it is unique in, DRF's message, and a stable ``name``."""

    name: str
    attnames: tuple[str, ...]
    field_names: tuple[str, ...]
    queryset: Any
    message: str
    lookup: str = "exact"

    @property
    def error_key(self) -> str:
        return self.field_names[0] if len(self.field_names) == 1 else non_field_key()

    @property
    def duplicate_message(self) -> str:
        """The message of a row whose key another row of the batch has too; ``{}`` is
        the other row's label."""
        return f"Duplicate {', '.join(self.field_names)}: {{}} of this batch has the same value."

    def key_of(self, get: Callable[[str], Any]) -> Key | None:
        """The row's key, from ``get(attname)``; ``None`` when a part is NULL (NULLs never
        clash)."""
        key = []
        for attname in self.attnames:
            value = get(attname)
            if value is None:
                return None
            if self.lookup == "iexact" and isinstance(value, str):
                value = value.casefold()
            key.append(value)
        return tuple(key)

    def existing(self, keys: Iterable[Key]) -> dict[Key, Any]:
        """Which of ``keys`` the database holds already: key -> primary key. One query
        (more only where the backend caps query parameters)."""
        queryset = self.queryset
        wanted = set(keys)
        values = list({k[0] for k in wanted})
        found: dict[Key, Any] = {}
        if not values:
            return found
        first = self.attnames[0]
        iexact = self.lookup == "iexact"
        for part in in_batches(values, connections[queryset.db]):
            if iexact:
                matches = queryset.annotate(_bulkops_key=Lower(first)).filter(_bulkops_key__in=part)
            else:
                matches = filter_in(queryset, first, part)
            for pk, *found_values in matches.values_list("pk", *self.attnames):
                if iexact:
                    found_values = [v.casefold() if isinstance(v, str) else v for v in found_values]
                key = tuple(found_values)
                if key in wanted:
                    found[key] = pk
        return found


def take_unique_checks(
    serializer: serializers.Serializer, model: type[models.Model]
) -> list[UniqueCheck]:
    """Remove the unique validators from ``serializer`` (an instance, with its fields
    bound) and return them as checks, in the order DRF would run them."""
    meta = model._meta
    checks: list[UniqueCheck] = []

    def attname(source: str) -> str:
        return meta.get_field(source).attname

    for field in serializer.fields.values():
        if field.read_only:
            continue
        kept = []
        for validator in field.validators:
            if isinstance(validator, UniqueValidator):
                checks.append(
                    UniqueCheck(
                        name=f"unique:{field.field_name}",
                        attnames=(attname(field.source),),
                        field_names=(field.field_name,),
                        queryset=validator.queryset,
                        message=str(validator.message),
                        lookup=validator.lookup,
                    )
                )
            else:
                kept.append(validator)
        field.validators = kept
    kept = []
    for validator in serializer.validators:
        if isinstance(validator, UniqueTogetherValidator) and not getattr(
            validator, "condition", None
        ):
            names = tuple(validator.fields)
            checks.append(
                UniqueCheck(
                    name=f"unique:{','.join(names)}",
                    attnames=tuple(attname(serializer.fields[n].source) for n in names),
                    field_names=names,
                    queryset=validator.queryset,
                    message=str(validator.message).format(field_names=", ".join(names)),
                )
            )
        else:
            kept.append(validator)
    serializer.validators = kept
    seen: set[str] = set()
    for check in checks:  # two validators on the same fields keep apart
        while check.name in seen:
            check.name += "'"
        seen.add(check.name)
    return checks


def key_text(key: Key) -> str:
    """A key as text fit for a database text column: equal keys, equal texts."""
    if len(key) == 1:
        return _text(key[0])
    return json.dumps([_text(part) for part in key], ensure_ascii=False)


def _text(value: Any) -> str:
    if isinstance(value, str):
        # NUL fits no text column (and no validated text holds one): escape it.
        return value if "\x00" not in value else json.dumps(value)
    if isinstance(value, models.Model):
        value = value.pk
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
