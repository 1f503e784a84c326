"""The objects a chunk's rows name (update, delete, upsert): found with two queries at
most, asked about (``check_target``: the REST door's object permissions; protection on
delete), and the words for a row whose object is not there (any more)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connections, models
from rest_framework.exceptions import ValidationError

from .errors import add_error, non_field_key, plain_errors
from .lookups import AMBIGUOUS, filter_in, in_batches, lookup_value
from .options import DELETE, UPSERT
from .protect import Protection, refusal_message
from .staged import StagedRow
from .unique import key_text


class Targets:
    """Finds and checks the objects named by the rows of one batch."""

    def __init__(
        self,
        *,
        model: type[models.Model],
        mode: str,
        natural_key: Sequence[str],
        queryset: Any,
        db: str,
        serializer: Any,
        check_target: Callable[[models.Model], str | None] | None,
    ) -> None:
        self.model = model
        self.mode = mode
        self.natural_key = tuple(natural_key)
        self.queryset = queryset
        self.db = db
        self.serializer = serializer
        self.check_target = check_target
        opts = model._meta
        self.key_fields = [opts.get_field(name) for name in self.natural_key]
        for field in self.key_fields:
            if field.is_relation:
                raise ImproperlyConfigured(
                    f"natural_key field {field.name!r} of {model.__name__} is a relation; "
                    "name the object by its own unique fields."
                )
        self.select_related = [
            f.name for f in opts.concrete_fields if f.many_to_one or f.one_to_one
        ]
        self.protection = Protection(model, db)

    def find(
        self, rows: list[StagedRow], blocked: set[int], nameless: dict[int, list[str]]
    ) -> list[list[Any]]:
        """Fetch the objects named by ``id`` or the natural key: two queries at most.

        Returns the batch keys ``[pk, position, naming field]`` of the rows that found
        their object, so two rows naming one object are found batch-wide; an upsert row
        without its natural key goes into ``nameless`` (said after validation).
        """
        meta = self.model._meta
        by_pk: dict[Any, list[StagedRow]] = {}
        by_key: dict[tuple, list[StagedRow]] = {}
        nk = self.natural_key
        nfe = non_field_key()
        for row in rows:
            if row.index in blocked:
                continue
            values = row.source
            raw_id = values.get("id")
            by_id = self.mode != UPSERT and raw_id not in (None, "")
            try:
                if by_id:
                    by_pk.setdefault(lookup_value(meta.pk, raw_id), []).append(row)  # type: ignore[arg-type]
                elif nk and all(values.get(n) not in (None, "") for n in nk):
                    key = tuple(self._clean_key(f, values[f.name]) for f in self.key_fields)
                    by_key.setdefault(key, []).append(row)
                elif self.mode == UPSERT:
                    # Said after validation, unless DRF says why itself (blank, null...).
                    nameless[row.index] = [n for n in nk if values.get(n) in (None, "")]
                else:
                    naming = "'id'" + (" or by " + ", ".join(f"'{n}'" for n in nk) if nk else "")
                    add_error(row, nfe, f"Each item must name its object by {naming}.")
            except ValidationError as exc:
                add_error(row, "id" if by_id else nk[0], plain_errors(exc.detail)[0])
            except (DjangoValidationError, TypeError, ValueError, OverflowError):
                add_error(row, "id" if by_id else nk[0], "Incorrect type for an identifier.")
        queryset = self.queryset.select_related(*self.select_related)
        connection = connections[self.db]
        found_keys: list[list[Any]] = []
        found: dict[Any, Any]
        if by_pk:
            found = {}
            for part in in_batches(list(by_pk), connection):
                found.update((obj.pk, obj) for obj in filter_in(queryset, "pk", part))
            for pk, named in by_pk.items():
                self._attach(named, found.get(pk), "id", self._missing_id(pk), found_keys)
        if by_key:
            found = {}
            for part in in_batches(list({k[0] for k in by_key}), connection):
                for obj in filter_in(queryset, nk[0], part):
                    key = tuple(getattr(obj, f.attname) for f in self.key_fields)
                    found[key] = AMBIGUOUS if key in found else obj
            for key, named in by_key.items():
                shown = ", ".join(f"{n}={v}" for n, v in zip(nk, key, strict=True))
                obj = found.get(key)
                if obj is AMBIGUOUS:
                    plural = meta.verbose_name_plural
                    for row in named:
                        add_error(row, nk[0], f"More than one of the {plural} has {shown}.")
                    continue
                self._attach(named, obj, nk[0], self._missing_key(key), found_keys)
        found_keys.sort(key=lambda entry: entry[1])
        return found_keys

    def _missing_id(self, pk: Any) -> str:
        return f"No {self.model._meta.verbose_name} with id={pk}."

    def _missing_key(self, key: tuple) -> str:
        shown = ", ".join(f"{n}={v}" for n, v in zip(self.natural_key, key, strict=True))
        return f"No {self.model._meta.verbose_name} with {shown}."

    def missing_target(self, source: Mapping[str, Any]) -> tuple[str, str]:
        """``(field, message)`` of a row whose object is not there (any more): what
        validation says of a row that names no object."""
        raw_id = source.get("id")
        if self.mode != UPSERT and raw_id not in (None, ""):
            return "id", self._missing_id(lookup_value(self.model._meta.pk, raw_id))  # type: ignore[arg-type]
        key = tuple(self._clean_key(f, source[f.name]) for f in self.key_fields)
        return self.natural_key[0], self._missing_key(key)

    def check_protected(self, rows: list[StagedRow]) -> None:
        """A delete row whose object other objects still refer to fails as the write
        would fail it: one query per protecting relation (a dry run predicts it)."""
        named = [row for row in rows if row.errors is None and row.action == DELETE]
        refused = self.protection.refused(row.pk for row in named)
        nfe = non_field_key()
        for row in named:
            names = refused.get(row.pk)
            if names is not None:
                add_error(row, nfe, refusal_message(row.instance, names))

    def check_permissions(self, rows: list[StagedRow]) -> set[int]:
        """Ask ``check_target`` about every object found (the REST door checks object
        permissions there); its message refuses the row, which is not validated
        further (the single endpoint answers 403 before it validates)."""
        nfe = non_field_key()
        refused = set()
        for row in rows:
            if row.instance is not None and row.errors is None:
                refusal = self.check_target(row.instance)  # type: ignore[misc]
                if refusal is not None:
                    add_error(row, nfe, refusal)
                    row.action = None
                    refused.add(row.index)
        return refused

    def _clean_key(self, model_field: Any, value: Any) -> Any:
        """A natural key value as the serializer would store it (DRF trims text)."""
        field = self.serializer.fields.get(model_field.name)
        if field is not None and not field.read_only:
            value = field.to_internal_value(value)
        return lookup_value(model_field, value)

    def _attach(
        self,
        rows: list[StagedRow],
        obj: Any,
        field: str,
        missing: str,
        found_keys: list[list[Any]],
    ) -> None:
        for row in rows:
            if obj is None:
                if self.mode != UPSERT:
                    add_error(row, field, missing)
                continue
            # Each row changes its own copy: two rows may name one object.
            row.instance = obj if len(rows) == 1 else copy.copy(obj)
            row.pk = obj.pk
            found_keys.append([key_text((obj.pk,)), row.position, field])
            if self.mode == DELETE:
                row.action = DELETE
