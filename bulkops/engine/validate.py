"""Set-based validation of a chunk of rows on a DRF serializer.

DRF validates one row at a time and, for a ``ModelSerializer``, runs one query per
related field (``SlugRelatedField`` / ``PrimaryKeyRelatedField``) and one per unique
field or unique-together set *per row*: that is where its time goes. Here one
serializer instance validates every row of a chunk, with those queries taken out
of the row loop:

- each related field resolves from a map fetched with one ``__in`` query per chunk;
- unique validators come off the fields and are checked with one query per
  constraint per chunk (``unique``);
- objects to update or delete are fetched with one query per chunk.

Everything else — field validation, ``validate_<field>``, ``validate()`` — is DRF's
own, per row, so a project's serializer rules keep working untouched.

A chunk is validated on its own: duplicates *between* rows of the batch are found
from the keys each chunk records (``StagedChunk.keys``, see ``duplicates``), so
chunks may be validated in any order, by any worker.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connections, models, router
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.fields import empty
from rest_framework.relations import ManyRelatedField, PrimaryKeyRelatedField, SlugRelatedField
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from .errors import non_field_key, plain_errors
from .lookups import AMBIGUOUS, RelationResolver, filter_in, in_batches, lookup_value
from .options import CREATE, DELETE, UPDATE, UPSERT
from .rows import SourceRow
from .serializer import SURROGATE_CHECK, batch_serializer_class, field_plan
from .staged import StagedChunk, StagedRow
from .unique import UniqueCheck, key_text, take_unique_checks

TARGET = "target"  # the constraint name of "one object, named by two rows"


def add_error(row: StagedRow, field: str, message: str) -> None:
    if row.errors is None:
        row.errors = {}
    row.errors.setdefault(field, []).append(message)


class ChunkValidator:
    """Validates the chunks of one batch with a single serializer instance."""

    def __init__(
        self,
        *,
        serializer_class: type[serializers.BaseSerializer],
        mode: str,
        natural_key: Sequence[str] = (),
        context: dict[str, Any] | None = None,
        queryset: Any = None,
        check_target: Callable[[models.Model], str | None] | None = None,
    ) -> None:
        self.mode = mode
        self.check_target = check_target
        self.natural_key = tuple(natural_key)
        meta = getattr(serializer_class, "Meta", None)
        self.model: type[models.Model] = getattr(meta, "model", None)  # type: ignore[assignment]
        if self.model is None:
            raise ImproperlyConfigured(
                f"{serializer_class.__name__} has no Meta.model; bulkops needs a ModelSerializer."
            )
        self.serializer = batch_serializer_class(serializer_class)(
            context=context or {}, partial=mode == UPDATE
        )
        self.queryset = queryset if queryset is not None else self.model._default_manager.all()
        self.db = router.db_for_write(self.model)
        self.relations: list[RelationResolver] = []
        self.unique_checks: list[UniqueCheck] = []
        if mode != DELETE:
            self._prepare_fields()
        if mode == UPSERT and not self.natural_key:
            raise ImproperlyConfigured(
                f"Upsert needs a natural key for {self.model.__name__}: set "
                f"natural_key = ('field',) on {serializer_class.__name__}.Meta."
            )
        opts = self.model._meta
        self.key_fields = [opts.get_field(name) for name in self.natural_key]
        for field in self.key_fields:
            if field.is_relation:
                raise ImproperlyConfigured(
                    f"natural_key field {field.name!r} of {self.model.__name__} is a relation; "
                    "name the object by its own unique fields."
                )
        self.select_related = [
            f.name for f in opts.concrete_fields if f.many_to_one or f.one_to_one
        ]
        # Validated data name -> (attribute name, attribute of the related object or None).
        self.attributes: dict[str, tuple[str, str | None]] = {}
        for f in opts.concrete_fields:
            if f.is_relation:
                self.attributes[f.name] = (f.attname, f.target_field.attname)  # type: ignore[union-attr]
            self.attributes.setdefault(f.attname, (f.attname, None))
        self.unique_attnames = {a for check in self.unique_checks for a in check.attnames}

    # -- setting up the serializer -------------------------------------------------

    def _prepare_fields(self) -> None:
        serializer = self.serializer
        name = type(serializer).__name__
        serializer._bulkops_writable = [f for f in serializer.fields.values() if not f.read_only]
        serializer._bulkops_plan = field_plan(serializer)
        serializer._bulkops_read_only_defaults = any(
            f.read_only and f.default is not empty for f in serializer.fields.values()
        )
        for field in serializer._bulkops_writable:
            if isinstance(field, ManyRelatedField | serializers.BaseSerializer):
                raise ImproperlyConfigured(
                    f"{name}.{field.field_name} is a writable many-to-many or nested field; "
                    "bulkops writes with bulk_create/bulk_update, which cannot save it. "
                    "Make it read_only=True on the serializer used for bulk operations."
                )
            if isinstance(field, SlugRelatedField | PrimaryKeyRelatedField):
                if isinstance(field, SlugRelatedField) and "__" in field.slug_field:
                    continue  # a lookup path: leave DRF's own per-row query
                self.relations.append(RelationResolver(field))
            field.validators = [
                SURROGATE_CHECK if type(v) is ProhibitSurrogateCharactersValidator else v
                for v in field.validators
            ]
        self.unique_checks = take_unique_checks(serializer, self.model)

    # -- the chunk -----------------------------------------------------------------

    def validate(self, start: int, items: Iterable[Any]) -> StagedChunk:
        """The chunk's rows, validated: a constant number of queries."""
        rows = [_stage(start + offset, item) for offset, item in enumerate(items)]
        nfe = non_field_key()
        for row in rows:
            if row.errors is None and not isinstance(row.source, Mapping):
                kind = type(row.source).__name__
                add_error(row, nfe, f"Invalid data. Expected a dictionary, but got {kind}.")
        keys: dict[str, list[list[Any]]] = {}
        if self.mode != CREATE:
            keys[TARGET] = self._find_targets(rows)
            if self.check_target is not None:
                self._check_targets(rows)
        if self.mode != DELETE:
            keys.update(self._validate_fields(rows))
        for row in rows:
            if row.errors is not None:
                row.action = row.values = row.instance = row.related = None
        return StagedChunk(start, rows, {name: ks for name, ks in keys.items() if ks}, self.model)

    def _validate_fields(self, rows: list[StagedRow]) -> dict[str, list[list[Any]]]:
        for resolver in self.relations:
            resolver.prefetch(row.source for row in rows if row.errors is None)
        serializer = self.serializer
        attributes = self.attributes
        unique_attnames = self.unique_attnames
        nfe = non_field_key()
        before: dict[int, dict[str, Any]] = {}  # unique attributes an update changes, as were
        for row in rows:
            if row.errors is not None:
                continue
            instance = row.instance
            serializer.instance = instance
            serializer.initial_data = row.source
            try:
                validated = serializer.run_validation(row.source)
            except ValidationError as exc:
                errors = plain_errors(exc.detail)
                row.errors = errors if isinstance(errors, dict) else {nfe: errors}
                continue
            values: dict[str, Any] = {}
            related = None
            for name, value in validated.items():
                attname, target = attributes.get(name, (name, None))
                if target is not None and value is not None:
                    if related is None:
                        related = {}
                    related[name] = value
                    value = getattr(value, target)
                values[attname] = value
            row.values = values
            if instance is None:
                row.action = CREATE
                row.related = related
                continue
            row.action = UPDATE
            changed = unique_attnames.intersection(values)
            if changed:
                before[row.index] = {a: getattr(instance, a) for a in changed}
            for name, value in validated.items():
                setattr(instance, name, value)
        serializer.instance = None
        return {check.name: self._check_unique(check, rows, before) for check in self.unique_checks}

    def _check_unique(
        self, check: UniqueCheck, rows: list[StagedRow], before: dict[int, dict[str, Any]]
    ) -> list[list[Any]]:
        """Errors for keys the database holds (for another object); the batch keys of
        the rows that write a value (an update that keeps its value writes none)."""
        batch_keys = []
        keyed: dict[tuple, list[StagedRow]] = {}
        for row in rows:
            if row.action is None:
                continue
            if row.instance is not None:
                state = row.instance.__dict__
                key = check.key_of(state.get)
                old = before.get(row.index)
                writes = old is not None and key != check.key_of({**state, **old}.get)
            else:
                key = check.key_of(row.values.get)  # type: ignore[union-attr]
                writes = True
            if key is None:
                continue
            if writes:
                batch_keys.append([key_text(key), row.position])
            if row.errors is None:
                keyed.setdefault(key, []).append(row)
        if keyed:
            owners = check.existing(keyed)
            for key, named in keyed.items():
                owner = owners.get(key)
                for row in named:
                    if owner is not None and owner != row.pk:
                        add_error(row, check.error_key, check.message)
        return batch_keys

    def _find_targets(self, rows: list[StagedRow]) -> list[list[Any]]:
        """Fetch the objects named by ``id`` or the natural key: two queries at most.

        Returns the batch keys ``[pk, position, naming field]`` of the rows that found
        their object, so two rows naming one object are found batch-wide.
        """
        meta = self.model._meta
        by_pk: dict[Any, list[StagedRow]] = {}
        by_key: dict[tuple, list[StagedRow]] = {}
        nk = self.natural_key
        nfe = non_field_key()
        for row in rows:
            if row.errors is not None:
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
                    for n in nk:
                        if values.get(n) in (None, ""):
                            add_error(row, n, "This field is required.")
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
                missing = f"No {meta.verbose_name} with id={pk}."
                self._attach(named, found.get(pk), "id", missing, found_keys)
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
                missing = f"No {meta.verbose_name} with {shown}."
                self._attach(named, obj, nk[0], missing, found_keys)
        found_keys.sort(key=lambda entry: entry[1])
        return found_keys

    def _check_targets(self, rows: list[StagedRow]) -> None:
        """Ask ``check_target`` about every object found (the REST door checks object
        permissions there); its message refuses the row."""
        nfe = non_field_key()
        for row in rows:
            if row.instance is not None and row.errors is None:
                refusal = self.check_target(row.instance)  # type: ignore[misc]
                if refusal is not None:
                    add_error(row, nfe, refusal)
                    row.action = None

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

    def unique_clash(self, pk: Any, get: Any) -> tuple[str, str] | None:
        """After a write failed: the (field, message) of the unique key this row (object
        ``pk``, values read by ``get(attname)``) shares with another object, if any.
        One query per constraint: the rare path."""
        for check in self.unique_checks:
            key = check.key_of(get)
            if key is None:
                continue
            owner = check.existing([key]).get(key)
            if owner is not None and owner != pk:
                return check.error_key, check.message
        return None


def _stage(index: int, item: Any) -> StagedRow:
    if isinstance(item, SourceRow):
        errors = {k: list(v) for k, v in item.errors.items()} if item.errors else None
        return StagedRow(index, item.row, item.ref, errors=errors, source=item.values)
    return StagedRow(index, source=item)
