"""Set-based validation of a chunk of rows on a DRF serializer.

DRF validates one row at a time and, for a ``ModelSerializer``, runs one query per
related field (``SlugRelatedField`` / ``PrimaryKeyRelatedField``) and one per unique
field or unique-together set *per row*: that is where its time goes. Here one
serializer instance validates every row of a batch, with those queries taken out of
the row loop:

- each related field resolves from a map fetched with one ``__in`` query per chunk;
- unique validators are removed from the fields and checked with one query per
  constraint per chunk, plus a batch-wide key map for duplicates inside the batch;
- objects to update or delete are fetched with one query per chunk.

Everything else — field validation, ``validate_<field>``, ``validate()`` — is DRF's
own, per row, so a project's serializer rules keep working untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connections, models, router
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.fields import empty
from rest_framework.relations import ManyRelatedField, PrimaryKeyRelatedField, SlugRelatedField
from rest_framework.validators import (
    ProhibitSurrogateCharactersValidator,
    UniqueTogetherValidator,
    UniqueValidator,
)

from .lookups import (
    AMBIGUOUS,
    SURROGATE_CHECK,
    RelationResolver,
    batch_serializer_class,
    field_plan,
    filter_in,
    in_batches,
    lookup_value,
)

CREATE, UPDATE, DELETE = "create", "update", "delete"
NON_FIELD = "non_field_errors"


@dataclass(slots=True)
class PreparedRow:
    """A row after validation: what to do with which instance, or why it cannot."""

    index: int
    row: int | None
    ref: Any
    values: Any
    action: str | None = None
    instance: models.Model | None = None
    update_fields: tuple[str, ...] = ()
    errors: dict[str, list[str]] | None = None
    # A row to create keeps its validated data; the model instance is built only
    # where one is needed (bulk_create, output data, hooks): COPY does without.
    validated: dict[str, Any] | None = None
    pk: Any = None
    copy_values: list[Any] | None = None  # filled ahead of the write (ChunkWriter.prepare)

    def get_instance(self, model: type[models.Model]) -> models.Model:
        if self.instance is None:
            self.instance = model(**self.validated)  # type: ignore[arg-type]
            if self.pk is not None:
                self.instance.pk = self.pk
                self.instance._state.adding = False
        return self.instance

    def value_of(self, source: str) -> Any:
        if self.instance is not None:
            return getattr(self.instance, source, None)
        return self.validated.get(source) if self.validated is not None else None

    @property
    def position(self) -> int:
        """The row number for file rows, the index for API items: unique in a batch."""
        return self.row if self.row is not None else self.index

    @property
    def label(self) -> str:
        return label_of(self.position, is_file_row=self.row is not None)


def label_of(position: int, *, is_file_row: bool) -> str:
    return f"row {position}" if is_file_row else f"item {position}"


def plain_errors(detail: Any) -> Any:
    """DRF's ``ErrorDetail`` tree as plain strings, lists and dicts."""
    if isinstance(detail, Mapping):
        return {str(k): plain_errors(v) for k, v in detail.items()}
    if isinstance(detail, list | tuple):
        return [plain_errors(v) for v in detail]
    return str(detail)


def add_error(row: PreparedRow, field: str, message: str) -> None:
    if row.errors is None:
        row.errors = {}
    row.errors.setdefault(field, []).append(message)


@dataclass
class UniqueCheck:
    """One unique constraint, checked once per chunk instead of once per row."""

    sources: tuple[str, ...]  # model field names
    field_names: tuple[str, ...]  # serializer field names, for error keys
    queryset: Any
    message: str
    lookup: str = "exact"

    @property
    def error_key(self) -> str:
        return self.field_names[0] if len(self.field_names) == 1 else NON_FIELD


class ChunkValidator:
    """Validates chunks of one batch with a single serializer instance.

    It keeps batch-wide maps (unique keys, update targets) so duplicates across
    chunks are found too; a row found to clash with a *later* row is recorded in
    ``late_errors`` and picked up before anything is written.
    """

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
        self.serializer = batch_serializer_class(serializer_class)(
            context=context or {}, partial=mode == "update"
        )
        meta = getattr(serializer_class, "Meta", None)
        self.model: type[models.Model] = getattr(meta, "model", None)  # type: ignore[assignment]
        if self.model is None:
            raise ImproperlyConfigured(
                f"{serializer_class.__name__} has no Meta.model; bulkops needs a ModelSerializer."
            )
        self.queryset = queryset if queryset is not None else self.model._default_manager.all()
        self.db = router.db_for_write(self.model)
        # Batch-wide maps hold one int (the row's position) per key, so a million-row
        # batch costs tens of megabytes here, not the rows themselves.
        self.late_errors: dict[int, dict[str, list[str]]] = {}
        self._seen: dict[int, dict[Any, int]] = {}
        self._targets: dict[Any, tuple[int, str]] = {}
        # False in a worker process (parallel.py): duplicates inside the batch are
        # then found by the parent from ``batch_keys``, in row order.
        self.batch_wide = True
        self.relations: list[RelationResolver] = []
        self.unique_checks: list[UniqueCheck] = []
        if mode != DELETE:
            self._prepare_fields()
        if mode == "upsert" and not self.natural_key:
            raise ImproperlyConfigured(
                f"Upsert needs a natural key for {self.model.__name__}: set "
                f"natural_key = ('field',) on {serializer_class.__name__}.Meta."
            )
        for name in self.natural_key:
            field = self.model._meta.get_field(name)
            if field.is_relation:
                raise ImproperlyConfigured(
                    f"natural_key field {name!r} of {self.model.__name__} is a relation; "
                    "name the object by its own unique fields."
                )
        self.select_related = [
            f.name for f in self.model._meta.concrete_fields if f.many_to_one or f.one_to_one
        ]

    # -- setting up the serializer -------------------------------------------------

    def _prepare_fields(self) -> None:
        serializer = self.serializer
        name = type(serializer).__name__
        serializer._bulkops_writable = [f for f in serializer.fields.values() if not f.read_only]
        serializer._bulkops_plan = field_plan(serializer)
        serializer._bulkops_read_only_defaults = any(
            f.read_only and f.default is not empty for f in serializer.fields.values()
        )
        for field in serializer.fields.values():
            if field.read_only:
                continue
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
            kept = []
            for validator in field.validators:
                if type(validator) is ProhibitSurrogateCharactersValidator:
                    kept.append(SURROGATE_CHECK)
                elif isinstance(validator, UniqueValidator):
                    self.unique_checks.append(
                        UniqueCheck(
                            sources=(field.source,),
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
                self.unique_checks.append(
                    UniqueCheck(
                        sources=tuple(serializer.fields[n].source for n in names),
                        field_names=names,
                        queryset=validator.queryset,
                        message=str(validator.message).format(field_names=", ".join(names)),
                    )
                )
            else:
                kept.append(validator)
        serializer.validators = kept

    # -- the chunk -----------------------------------------------------------------

    def validate_chunk(self, rows: list[PreparedRow]) -> list[PreparedRow]:
        """Fill in ``action``/``instance``/``errors`` of every row; a constant number of queries."""
        for row in rows:
            if row.errors is None and not isinstance(row.values, Mapping):
                kind = type(row.values).__name__
                add_error(row, NON_FIELD, f"Invalid data. Expected a dictionary, but got {kind}.")
        if self.mode != CREATE:
            self._find_targets(rows)
            if self.check_target is not None:
                for row in rows:
                    if row.instance is not None and row.errors is None:
                        refusal = self.check_target(row.instance)
                        if refusal is not None:
                            add_error(row, NON_FIELD, refusal)
                            row.instance, row.action = None, None
        if self.mode == DELETE:
            return rows
        for resolver in self.relations:
            resolver.prefetch(rows)
        serializer = self.serializer
        for row in rows:
            if row.errors is not None:
                continue
            serializer.instance = row.instance
            serializer.initial_data = row.values
            try:
                validated = serializer.run_validation(row.values)
            except ValidationError as exc:
                row.errors = plain_errors(exc.detail)
                if not isinstance(row.errors, dict):
                    row.errors = {NON_FIELD: row.errors}
                continue
            if row.instance is None:
                row.action = CREATE
                row.validated = validated
            else:
                row.action = UPDATE
                for attr, value in validated.items():
                    setattr(row.instance, attr, value)
                row.update_fields = tuple(validated)
        serializer.instance = None
        for number, check in enumerate(self.unique_checks):
            self._check_unique(number, check, rows)
        return rows

    def _find_targets(self, rows: list[PreparedRow]) -> None:
        """Fetch the objects named by ``id`` or the natural key: two queries at most."""
        meta = self.model._meta
        by_pk: dict[Any, list[PreparedRow]] = {}
        by_key: dict[tuple, list[PreparedRow]] = {}
        nk = self.natural_key
        nk_fields = [meta.get_field(n) for n in nk]
        for row in rows:
            if row.errors is not None:
                continue
            values = row.values
            raw_id = values.get("id")
            try:
                if self.mode != "upsert" and raw_id not in (None, ""):
                    by_pk.setdefault(lookup_value(meta.pk, raw_id), []).append(row)  # type: ignore[arg-type]
                elif nk and all(values.get(n) not in (None, "") for n in nk):
                    key = tuple(self._clean_key(f, values[f.name]) for f in nk_fields)
                    by_key.setdefault(key, []).append(row)
                elif self.mode == "upsert":
                    for n in nk:
                        if values.get(n) in (None, ""):
                            add_error(row, n, "This field is required.")
                else:
                    named = "'id'" + (" or by " + ", ".join(f"'{n}'" for n in nk) if nk else "")
                    add_error(row, NON_FIELD, f"Each item must name its object by {named}.")
            except ValidationError as exc:
                field = "id" if raw_id not in (None, "") and self.mode != "upsert" else nk[0]
                add_error(row, field, plain_errors(exc.detail)[0])
            except (DjangoValidationError, TypeError, ValueError, OverflowError):
                field = "id" if raw_id not in (None, "") and self.mode != "upsert" else nk[0]
                add_error(row, field, "Incorrect type for an identifier.")
        queryset = self.queryset.select_related(*self.select_related)
        connection = connections[self.db]
        if by_pk:
            found = {}
            for part in in_batches(list(by_pk), connection):
                found.update((obj.pk, obj) for obj in filter_in(queryset, "pk", part))
            for pk, named in by_pk.items():
                self._attach(named, found.get(pk), "id", f"No {meta.verbose_name} with id={pk}.")
        if by_key:
            first = nk[0]
            found = {}
            values = list({k[0] for k in by_key})
            for part in in_batches(values, connection):
                for obj in filter_in(queryset, first, part):
                    key = tuple(getattr(obj, f.attname) for f in nk_fields)
                    found[key] = AMBIGUOUS if key in found else obj
            for key, named in by_key.items():
                shown = ", ".join(f"{n}={v}" for n, v in zip(nk, key, strict=True))
                obj = found.get(key)
                if obj is AMBIGUOUS:
                    plural = meta.verbose_name_plural
                    for row in named:
                        add_error(row, nk[0], f"More than one of the {plural} has {shown}.")
                    continue
                self._attach(named, obj, nk[0], f"No {meta.verbose_name} with {shown}.")

    def _clean_key(self, model_field: Any, value: Any) -> Any:
        """A natural key value as the serializer would store it (DRF trims text)."""
        field = self.serializer.fields.get(model_field.name)
        if field is not None and not field.read_only:
            value = field.to_internal_value(value)
        return lookup_value(model_field, value)

    def _attach(self, rows: list[PreparedRow], obj: Any, field: str, missing: str) -> None:
        for row in rows:
            if obj is None:
                if self.mode == "upsert":
                    continue
                add_error(row, field, missing)
                continue
            first, first_field = self._targets.setdefault(obj.pk, (row.position, field))
            if first != row.position:
                if not self.batch_wide:
                    # The parent process reports it; this row needs its own instance.
                    row.instance = copy.copy(obj)
                    if self.mode == DELETE:
                        row.action = DELETE
                    continue
                message = "The same object is named by {} of this batch."
                self._duplicate(row, first, field, message, first_field=first_field)
                continue
            row.instance = obj
            if self.mode == DELETE:
                row.action = DELETE

    def _duplicate(
        self, row: PreparedRow, first: int, field: str, message: str, first_field: str = ""
    ) -> None:
        """Both rows get the error, each naming the other; the earlier one's is applied
        before anything is written (it may sit in a chunk validated long ago)."""
        is_file_row = row.row is not None
        add_error(row, field, message.format(label_of(first, is_file_row=is_file_row)))
        self.late_errors.setdefault(first, {}).setdefault(first_field or field, []).append(
            message.format(row.label)
        )

    # -- batch-wide keys, for chunks validated elsewhere (see parallel.py) -----------

    def batch_keys(self, rows: list[PreparedRow]) -> tuple[bool, list[tuple], list[list[tuple]]]:
        """What the batch-wide duplicate checks need of a validated chunk, column-wise:
        whether positions are row numbers, ``(pk, position, field)`` per target, and
        ``(key, position)`` per unique check, for every row that has them."""
        rows = [row for row in rows if row.action is not None]
        targets = []
        if self.mode != CREATE:
            for row in rows:
                if row.instance is not None and row.instance.pk is not None:
                    by_id = self.mode != "upsert" and row.values.get("id") not in (None, "")
                    field = "id" if by_id else self.natural_key[0]
                    targets.append((row.instance.pk, row.position, field))
        uniques = []
        for check in self.unique_checks:
            keyed = []
            for row in rows:
                key = self._key_of(check, row)
                if key is not None:
                    keyed.append((_compact(key), row.position))
            uniques.append(keyed)
        is_file_row = bool(rows) and rows[0].row is not None
        return is_file_row, targets, uniques

    def merge_batch_keys(
        self, is_file_row: bool, targets: list[tuple], uniques: list[list[tuple]]
    ) -> None:
        """Record a chunk's keys; a clash with an earlier row fails both, before writing."""
        seen_targets = self._targets
        for pk, position, field in targets:
            first, first_field = seen_targets.setdefault(pk, (position, field))
            if first != position:
                message = "The same object is named by {} of this batch."
                self._late_duplicate(position, is_file_row, first, field, first_field, message)
        for number, keyed in enumerate(uniques):
            seen = self._seen.setdefault(number, {})
            for key, position in keyed:
                first = seen.setdefault(key, position)
                if first != position:
                    check = self.unique_checks[number]
                    shown = ", ".join(check.field_names)
                    message = f"Duplicate {shown}: {{}} of this batch has the same value."
                    field = check.error_key
                    self._late_duplicate(position, is_file_row, first, field, field, message)

    def _late_duplicate(
        self,
        position: int,
        is_file_row: bool,
        first: int,
        field: str,
        first_field: str,
        message: str,
    ) -> None:
        late = self.late_errors
        late.setdefault(position, {}).setdefault(field, []).append(
            message.format(label_of(first, is_file_row=is_file_row))
        )
        late.setdefault(first, {}).setdefault(first_field, []).append(
            message.format(label_of(position, is_file_row=is_file_row))
        )

    def _key_of(self, check: UniqueCheck, row: PreparedRow) -> tuple | None:
        key = []
        for source in check.sources:
            value = row.value_of(source)
            if value is None:
                return None  # NULLs never clash
            if isinstance(value, models.Model):
                value = value.pk
            elif check.lookup == "iexact" and isinstance(value, str):
                value = value.casefold()
            key.append(value)
        return tuple(key)

    def _check_unique(self, number: int, check: UniqueCheck, rows: list[PreparedRow]) -> None:
        keyed: dict[tuple, PreparedRow] = {}
        seen = self._seen.setdefault(number, {})
        for row in rows:
            if row.errors is not None or row.action is None:
                continue
            key = self._key_of(check, row)
            if key is None:
                continue
            if not self.batch_wide:
                keyed.setdefault(key, row)
                continue
            first = seen.setdefault(_compact(key), row.position)
            if first != row.position:
                shown = ", ".join(check.field_names)
                message = f"Duplicate {shown}: {{}} of this batch has the same value."
                self._duplicate(row, first, check.error_key, message)
                continue
            keyed[key] = row
        if not keyed:
            return
        clashes = self._existing(check, list(keyed))
        for key, row in keyed.items():
            owner = clashes.get(key)
            if owner is not None and owner != _pk_of(row):
                add_error(row, check.error_key, check.message)

    def _existing(self, check: UniqueCheck, keys: list[tuple]) -> dict[tuple, Any]:
        """Which of ``keys`` the database holds already: key -> primary key."""
        queryset = check.queryset
        first = check.sources[0]
        values = list({k[0] for k in keys})
        wanted = set(keys)
        found: dict[tuple, Any] = {}
        attnames = [self.model._meta.get_field(s).attname for s in check.sources]
        connection = connections[queryset.db]
        for part in in_batches(values, connection):
            if check.lookup == "iexact":
                from django.db.models.functions import Lower

                matches = queryset.annotate(_bulkops_key=Lower(first)).filter(_bulkops_key__in=part)
            else:
                matches = filter_in(queryset, first, part)
            for pk, *values_ in matches.values_list("pk", *attnames):
                if check.lookup == "iexact":
                    values_ = [v.casefold() if isinstance(v, str) else v for v in values_]
                key = tuple(values_)
                if key in wanted:
                    found[key] = pk
        return found

    def check_row_unique(self, row: PreparedRow) -> bool:
        """After a write failed: does this row clash with the database? (one row, rare path)."""
        for check in self.unique_checks:
            key = self._key_of(check, row)
            if key is None:
                continue
            owner = self._existing(check, [key]).get(key)
            if owner is not None and owner != _pk_of(row):
                add_error(row, check.error_key, check.message)
                return True
        return False


def _pk_of(row: PreparedRow) -> Any:
    return row.instance.pk if row.instance is not None else None


def _compact(key: tuple) -> Any:
    """A batch-wide map key: a one-field key as its bare value (a tuple costs 48 bytes
    more per row, 48 MB in a million-row batch)."""
    return key[0] if len(key) == 1 else key
