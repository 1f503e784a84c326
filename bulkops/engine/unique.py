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
from rest_framework.fields import Field
from rest_framework.validators import UniqueTogetherValidator, UniqueValidator

from .errors import non_field_key
from .lookups import SURROGATES, filter_in, in_batches
from .outcome import UniqueSlot, noted_list, run_validators_noting
from .serializer import noting_run_validators

Key = tuple[Any, ...]


@dataclass
class UniqueCheck:
    """One unique constraint: its model fields, the serializer fields its errors go
    to, the queryset it is unique in, DRF's message, and a stable ``name``.
    ``field_level``: a field's ``UniqueValidator`` (else the serializer's
    ``UniqueTogetherValidator``); ``validator`` is the DRF validator it stands for."""

    name: str
    attnames: tuple[str, ...]
    field_names: tuple[str, ...]
    queryset: Any
    message: str
    lookup: str = "exact"
    field_level: bool = True
    sources: tuple[str, ...] = ()
    validator: Any = None
    related_attr: str | None = None  # a unique foreign key: the attribute its key is

    def __post_init__(self) -> None:
        # A field's unique value, compared as it is: its key is the value itself.
        self.plain = self.field_level and self.lookup == "exact" and self.related_attr is None

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
            if isinstance(value, models.Model):
                value = value.pk
            if self.lookup == "iexact" and isinstance(value, str):
                value = value.casefold()
            key.append(value)
        return tuple(key)

    def key_of_value(self, value: Any) -> Key | None:
        """``key_of`` for a one-field check, given that field's value (text and integers,
        the usual keys, without the general path's calls)."""
        kind = type(value)
        if kind is str:
            return (value.casefold() if self.lookup == "iexact" else value,)
        if kind is int:
            return (value,)
        return self.key_of(lambda attname: value)

    # -- one row's value, where its validator stood (``outcome.UniqueSlot``) -------------------

    def before_noting(self, slot: Any, value: Any, field: Any) -> None:
        """What DRF's validator does before its query: a unique-together validator of a
        new object refuses it when one of its fields is missing."""
        if not self.field_level:
            self.validator.enforce_required_fields(value, field)

    def key_of_noted(self, value: Any, instance: Any) -> Key | None:
        """The key DRF's validator would look for, from the value noted at its slot (a
        field's value; the serializer's validated values) and the object being updated;
        ``None`` when it would not look (a NULL part; an update that changes none of the
        fields)."""
        if self.field_level:
            if value is not None and self.related_attr is not None:
                value = getattr(value, self.related_attr)
            if len(self.attnames) == 1:
                return self.key_of_value(value)
            return self.key_of(lambda attname: value)
        values = []
        changed = instance is None
        for source in self.sources:
            if source in value:
                part = value[source]
                if instance is not None and part != getattr(instance, source, None):
                    changed = True
            else:
                part = getattr(instance, source, None) if instance is not None else None
            values.append(part)
        if not changed:
            return None
        return self.key_of(dict(zip(self.attnames, values, strict=True)).get)

    def existing(self, keys: Iterable[Key]) -> dict[Key, Any]:
        """Which of ``keys`` the database holds already: key -> primary key. One query
        (more only where the backend caps query parameters). Keys the database cannot
        hold (lone surrogates; NUL on PostgreSQL) are in none: DRF's own query fails
        for them and it counts them as free."""
        queryset = self.queryset
        connection = connections[queryset.db]
        nul_ok = connection.vendor != "postgresql"
        wanted = set(keys)
        texts = [key[0] for key in wanted if len(key) == 1 and type(key[0]) is str]
        joined = "".join(texts)
        if (
            len(texts) != len(wanted)
            or SURROGATES.search(joined) is not None
            or not (nul_ok or "\x00" not in joined)
        ):  # all one-part text keys that the database can hold: no need to look one by one
            wanted = {key for key in wanted if all(_storable(part, nul_ok) for part in key)}
        values = list({k[0] for k in wanted})
        found: dict[Key, Any] = {}
        if not values:
            return found
        first = self.attnames[0]
        iexact = self.lookup == "iexact"
        for part in in_batches(values, connection):
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


def _storable(value: Any, nul_ok: bool) -> bool:
    if not isinstance(value, str):
        return True
    if SURROGATES.search(value) is not None:
        return False
    return nul_ok or "\x00" not in value


def take_unique_checks(
    serializer: serializers.Serializer, model: type[models.Model]
) -> list[UniqueCheck]:
    """Put a ``UniqueSlot`` where each unique validator of ``serializer`` (an instance,
    with its fields bound) stood, and return the checks, in the order DRF would run them.

    A validator stays as it is (its query per row) where its field or serializer class
    runs validators its own way, or where the check needs more than a key (a condition,
    ``nulls_distinct=False``)."""
    meta = model._meta
    checks: list[UniqueCheck] = []

    def attname(source: str) -> str:
        return meta.get_field(source).attname

    noted = _Noted(serializer)
    for field in serializer.fields.values():
        if field.read_only or type(field).run_validators is not Field.run_validators:
            continue
        slots = []
        for n, validator in enumerate(field.validators):
            if type(validator) is not UniqueValidator:
                continue
            model_field = meta.get_field(field.source)
            check = UniqueCheck(
                name=f"unique:{field.field_name}",
                attnames=(model_field.attname,),
                field_names=(field.field_name,),
                queryset=validator.queryset,
                message=str(validator.message),
                lookup=validator.lookup,
                sources=(field.source,),
                validator=validator,
                related_attr=(
                    model_field.target_field.attname  # type: ignore[union-attr]
                    if model_field.is_relation
                    else None
                ),
            )
            checks.append(check)
            slots.append((n, UniqueSlot(check, validator)))
        if slots:
            validators = list(field.validators)
            for n, slot in slots:
                validators[n] = slot
            field.validators = validators
            field.run_validators = _noting(run_validators_noting, field, noted)
    if type(serializer).run_validators is noting_run_validators:
        validators = list(serializer.validators)
        for n, validator in enumerate(validators):
            if type(validator) is not UniqueTogetherValidator or not _keyed(validator):
                continue
            names = tuple(validator.fields)
            check = UniqueCheck(
                name=f"unique:{','.join(names)}",
                attnames=tuple(attname(serializer.fields[n].source) for n in names),
                field_names=names,
                queryset=validator.queryset,
                message=str(validator.message).format(field_names=", ".join(names)),
                field_level=False,
                sources=tuple(serializer.fields[n].source for n in names),
                validator=validator,
            )
            checks.append(check)
            validators[n] = UniqueSlot(check, validator)
        serializer.validators = validators
    seen: set[str] = set()
    for check in checks:  # two validators on the same fields keep apart
        while check.name in seen:
            check.name += "'"
        seen.add(check.name)
    return checks


def _keyed(validator: UniqueTogetherValidator) -> bool:
    """Whether the validator's check is a key lookup and nothing more."""
    return (
        getattr(validator, "condition", None) is None
        and not getattr(validator, "condition_fields", None)
        and getattr(validator, "nulls_distinct", None) is not False
    )


class _Noted:  # noqa: B903 - reads the list at call time
    """The list the current row's unique slots are noted in (``validate_row`` sets it)."""

    def __init__(self, serializer: Any) -> None:
        self.serializer = serializer

    def get(self) -> list:
        return noted_list(self.serializer)


def _noting(run: Callable[..., None], field: Any, noted: _Noted) -> Callable[[Any], None]:
    def run_validators(value: Any) -> None:
        run(field, value, noted.get())

    # What the column plan looks for: it then validates the field's column without the
    # slots and notes them itself (``column_choice``).
    run_validators.notes_unique_slots = True  # type: ignore[attr-defined]
    return run_validators


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
