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
from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connections, models, router
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.fields import Field, empty
from rest_framework.relations import ManyRelatedField, PrimaryKeyRelatedField, SlugRelatedField
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from .columns import ColumnPlan, ValidatedColumns
from .errors import merged, non_field_key, plain_errors
from .lookups import (
    AMBIGUOUS,
    RelationResolver,
    filter_in,
    guard_related_fields,
    in_batches,
    lookup_value,
)
from .options import CREATE, DELETE, UPDATE, UPSERT
from .outcome import RowOutcome, compose, validate_row
from .protect import Protection, refusal_message
from .rows import SourceRow
from .serializer import (
    SURROGATE_CHECK,
    _to_internal_value,
    batch_serializer_class,
    field_plan,
    noting_run_validators,
)
from .staged import StagedChunk, StagedRow
from .unique import UniqueCheck, key_text, take_unique_checks

_MISSING = object()
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
        self.field_order: list[str] = []
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
        self._shapes: dict[tuple, Any] = {}  # validated keys -> how they map to attributes
        self.protection = Protection(self.model, self.db)

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
        guard_related_fields(serializer)  # the fields left to DRF's own lookups
        self.field_order = [f.field_name for f in serializer._bulkops_writable]
        self.column_plan = ColumnPlan.for_serializer(serializer)

    # -- the chunk -----------------------------------------------------------------

    def validate(self, start: int, items: Iterable[Any]) -> StagedChunk:
        """The chunk's rows, validated: a constant number of queries.

        A row's errors are what the single endpoint answers for it (DRF's, with the
        set-based checks where DRF puts them), after the bulk-only ones (the object it
        names is not there) and before the ones it came with (a reader's or the
        envelope's: a bad ``_ref``, say)."""
        rows: list[StagedRow] = []
        given: dict[int, dict[str, Any]] = {}
        for offset, item in enumerate(items):
            row, errors = _stage(start + offset, item)
            rows.append(row)
            if errors:
                given[row.index] = errors
        nfe = non_field_key()
        blocked: set[int] = set()  # rows not validated further
        for row in rows:
            if not isinstance(row.source, Mapping) or (row.index in given and not row.source):
                if row.index not in given:
                    kind = type(row.source).__name__
                    add_error(row, nfe, f"Invalid data. Expected a dictionary, but got {kind}.")
                blocked.add(row.index)
        keys: dict[str, list[list[Any]]] = {}
        self._nameless: dict[int, list[str]] = {}
        if self.mode != CREATE:
            keys[TARGET] = self._find_targets(rows, blocked)
            if self.check_target is not None:
                blocked.update(self._check_targets(rows))
        if self.mode == DELETE:
            self._check_protected(rows)
        else:
            keys.update(self._validate_fields(rows, blocked))
        for index, names in self._nameless.items():
            row = rows[index - start]
            for name in names:
                if row.errors is None or name not in row.errors:
                    add_error(row, name, "This field is required.")
        for row in rows:
            errors = given.get(row.index)
            if errors:
                row.errors = merged(row.errors, errors)
            if row.errors is not None:
                row.action = row.values = row.instance = row.related = None
        return StagedChunk(start, rows, {name: ks for name, ks in keys.items() if ks}, self.model)

    def _validate_fields(
        self, rows: list[StagedRow], blocked: set[int]
    ) -> dict[str, list[list[Any]]]:
        for resolver in self.relations:
            resolver.prefetch(row.source for row in rows if row.index not in blocked)
        serializer = self.serializer
        validated = [row for row in rows if row.index not in blocked]
        columns: ValidatedColumns | None = None
        deferred: set[int] = set()  # rows whose column notes wait for the chunk's check
        if self.column_plan.columnar:
            # Each field over the chunk at once; the serializer's to_internal_value
            # then answers a row from these columns (serializer._to_internal_value).
            columns = self.column_plan.validate_columns([row.source for row in validated])
            deferred = columns.defer_notes()
            serializer._bulkops_columns = columns
        # An update row whose object is not there: its fields are validated, and no
        # more (there is no object to validate against, nor to be unique among).
        nameless = {r.index for r in rows if r.errors is not None} if self.mode == UPDATE else set()
        outcomes: dict[int, RowOutcome] = {}  # rows that failed, or noted unique values
        before: dict[int, dict[str, Any]] = {}  # unique attributes an update changes, as were
        # Rows the columns answer whole, of a serializer whose own steps do nothing more
        # (no validators, DRF's validate()), are new rows' values at once: what
        # validate_row and _stage_values would make of them, without their steps.
        whole = columns is not None and _columns_decide(serializer)
        keys = cast(tuple[str, ...], tuple(self.column_plan.keys))  # all named when answered
        shape = self._shape_of(keys) if whole else None
        for position, row in enumerate(validated):
            if whole and row.instance is None and row.errors is None:
                answer = columns.answered(position)  # type: ignore[union-attr]
                if answer is not None:
                    if shape is None:
                        self._stage_values(row, dict(zip(keys, answer, strict=True)), before)
                    else:
                        self._stage_new(row, shape, answer)
                    continue
            serializer.instance = row.instance
            serializer.initial_data = row.source
            outcome = validate_row(serializer, row.source, fields_only=row.index in nameless)
            if outcome.stage is None and row.errors is None:
                self._stage_values(row, outcome.value, before)
            if outcome.stage is not None or outcome.noted:
                if position in deferred:
                    # This row's notes are read one by one: its column notes first,
                    # where DRF's to_internal_value made them.
                    deferred.remove(position)
                    outcome.noted[:0] = columns.column_notes(position)  # type: ignore[union-attr]
                outcome.value = None  # staged already; only the errors and notes are needed
                outcomes[row.index] = outcome
        serializer.instance = serializer._bulkops_columns = None
        taken = self._taken(rows, outcomes, nameless, validated, columns)
        is_taken = lambda noted: id(noted) in taken  # noqa: E731
        order = self.field_order
        for row in rows:
            found = outcomes.get(row.index)
            if found is None:
                continue
            outcome = found
            # Nothing taken (the usual chunk): DRF's errors as they are.
            errors = compose(outcome, is_taken, order) if taken else _errors_of(outcome)
            if errors:
                row.errors = merged(row.errors, errors)
        return {check.name: self._batch_keys(check, rows, before) for check in self.unique_checks}

    def _shape_of(self, keys: tuple[str, ...]) -> Any:
        shape = self._shapes.get(keys, _MISSING)
        if shape is _MISSING:
            shape = self._shapes[keys] = self._shape(keys)
        return shape

    def _stage_new(self, row: StagedRow, shape: Any, validated: tuple) -> None:
        """``_stage_values`` of a new row whose validated values come in ``shape``'s
        order (``shape`` not ``None``)."""
        attnames, relations = shape
        values = dict(zip(attnames, validated, strict=True))
        related = None
        for name, attname, target in relations:
            value = values[attname]
            if value is not None:
                if related is None:
                    related = {}
                related[name] = value
                values[attname] = getattr(value, target)
        row.values = values
        row.action = CREATE
        row.related = related

    def _stage_values(
        self, row: StagedRow, validated: Any, before: dict[int, dict[str, Any]]
    ) -> None:
        """What a valid row writes: model attribute values, and the action."""
        shape = self._shape_of(tuple(validated))
        related = None
        if shape is None:  # two names for one attribute: in DRF's order, one by one
            attributes = self.attributes
            values: dict[str, Any] = {}
            for name, value in validated.items():
                attname, target = attributes.get(name, (name, None))
                if target is not None and value is not None:
                    if related is None:
                        related = {}
                    related[name] = value
                    value = getattr(value, target)
                values[attname] = value
        else:
            attnames, relations = shape
            values = dict(zip(attnames, validated.values(), strict=True))
            for name, attname, target in relations:
                value = validated[name]
                if value is not None:
                    if related is None:
                        related = {}
                    related[name] = value
                    values[attname] = getattr(value, target)
        row.values = values
        instance = row.instance
        if instance is None:
            row.action = CREATE
            row.related = related
            return
        row.action = UPDATE
        changed = self.unique_attnames.intersection(values)
        if changed:
            before[row.index] = {a: getattr(instance, a) for a in changed}
        for name, value in validated.items():
            setattr(instance, name, value)

    def _shape(self, keys: tuple[str, ...]) -> Any:
        """How validated data with these keys becomes attribute values: the attribute
        names in order, and the related fields ``(name, attname, target attribute)``;
        ``None`` when two keys name one attribute."""
        attributes = self.attributes
        mapped = [attributes.get(name, (name, None)) for name in keys]
        attnames = [attname for attname, _ in mapped]
        if len(set(attnames)) != len(attnames):
            return None
        relations = [
            (name, attname, target)
            for name, (attname, target) in zip(keys, mapped, strict=True)
            if target is not None
        ]
        return attnames, relations

    def _taken(
        self,
        rows: list[StagedRow],
        outcomes: dict[int, RowOutcome],
        nameless: set[int],
        validated: list[StagedRow],
        columns: ValidatedColumns | None,
    ) -> set[int]:
        """The noted unique values (``id()`` of each ``Noted``) the database holds for
        another object: one query per unique check. The keys of rows whose column notes
        were deferred (``ValidatedColumns.defer_notes``) are checked with the others; a
        row whose key is taken then gets its notes, and an outcome to compose."""
        by_check: dict[str, dict[tuple, list[tuple[Any, Any]]]] = {}
        for row in rows:
            outcome = outcomes.get(row.index)
            if outcome is None or row.index in nameless:
                continue
            for noted in outcome.noted:
                if noted.key is not None:
                    by_key = by_check.setdefault(noted.slot.check.name, {})
                    by_key.setdefault(noted.key, []).append((row.pk, noted))
        deferred: dict[str, list[tuple[Any, list[int], list[Any]]]] = {}
        if columns is not None and columns.deferred:
            positions = sorted(p for p in columns.deferred if validated[p].index not in nameless)
            for slot, kept, keys in columns.deferred_keys(positions):
                deferred.setdefault(slot.check.name, []).append((slot, kept, keys))
        taken: set[int] = set()
        late: dict[int, set[Any]] = {}  # position -> its deferred slots whose key is taken
        for check in self.unique_checks:
            keyed = by_check.get(check.name, {})
            wanted = set(keyed)
            for _, _, keys in deferred.get(check.name, ()):
                wanted.update(keys)
            wanted.discard(None)
            if not wanted:
                continue
            owners = check.existing(wanted)
            if not owners:
                continue
            for key, named in keyed.items():
                owner = owners.get(key)
                if owner is None:
                    continue
                for pk, noted in named:
                    if owner != pk:
                        taken.add(id(noted))
            for slot, kept, keys in deferred.get(check.name, ()):
                for position, key in zip(kept, keys, strict=True):
                    owner = None if key is None else owners.get(key)
                    if owner is not None and owner != validated[position].pk:
                        late.setdefault(position, set()).add(slot)
        for position, slots in late.items():
            notes = columns.column_notes(position)  # type: ignore[union-attr]
            taken.update(id(n) for n in notes if n.slot in slots)
            outcomes[validated[position].index] = RowOutcome(noted=notes)
        return taken

    def _batch_keys(
        self, check: UniqueCheck, rows: list[StagedRow], before: dict[int, dict[str, Any]]
    ) -> list[list[Any]]:
        """The batch keys of the valid rows that write a value (an update that keeps its
        value writes none): rows of the batch that share one are duplicates."""
        batch_keys = []
        single = check.attnames[0] if len(check.attnames) == 1 else None
        for row in rows:
            if row.action is None or row.errors is not None:
                continue
            if row.instance is not None:
                state = row.instance.__dict__
                key = check.key_of(state.get)
                old = before.get(row.index)
                writes = old is not None and key != check.key_of({**state, **old}.get)
            else:
                if single is not None:
                    value = row.values.get(single)  # type: ignore[union-attr]
                    key = None if value is None else check.key_of_value(value)
                else:
                    key = check.key_of(row.values.get)  # type: ignore[union-attr]
                writes = True
            if key is not None and writes:
                batch_keys.append([key_text(key), row.position])
        return batch_keys

    def _find_targets(self, rows: list[StagedRow], blocked: set[int]) -> list[list[Any]]:
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
                    self._nameless[row.index] = [n for n in nk if values.get(n) in (None, "")]
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

    def related_vanished(self, source: Any, get: Callable[[str], Any]) -> tuple[str, str] | None:
        """After a write failed: ``(field, message)`` of a related object the row refers to
        (attributes read by ``get(attname)``) that is not there any more, worded as
        validation words it. One query per relation: the rare path."""
        for resolver in self.relations:
            model_field = resolver.model_field_of_source(self.model)
            if model_field is None:
                continue
            value = get(model_field.attname)
            if value is None:
                continue
            related = model_field.related_model._base_manager.db_manager(self.db)  # type: ignore[union-attr]
            target = model_field.target_field.attname  # type: ignore[union-attr]
            if not related.filter(**{target: value}).exists():
                data = source.get(resolver.field_name) if isinstance(source, Mapping) else None
                return resolver.field_name, resolver.missing_message(data)
        return None

    def _check_protected(self, rows: list[StagedRow]) -> None:
        """A delete row whose object other objects still refer to fails as the write
        would fail it: one query per protecting relation (a dry run predicts it)."""
        named = [row for row in rows if row.errors is None and row.action == DELETE]
        refused = self.protection.refused(row.pk for row in named)
        nfe = non_field_key()
        for row in named:
            names = refused.get(row.pk)
            if names is not None:
                add_error(row, nfe, refusal_message(row.instance, names))

    def _check_targets(self, rows: list[StagedRow]) -> set[int]:
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


def _stage(index: int, item: Any) -> tuple[StagedRow, dict[str, list[str]] | None]:
    """The row, and the errors it came with (a reader's, the envelope's)."""
    if isinstance(item, SourceRow):
        errors = {k: list(v) for k, v in item.errors.items()} if item.errors else None
        return StagedRow(index, item.row, item.ref, source=item.values), errors
    return StagedRow(index, source=item), None


def _columns_decide(serializer: Any) -> bool:
    """Whether ``validate_row`` of a dict the columns answer whole returns their values
    as they are: DRF's empty-value step (a dict is not empty), no serializer validators,
    DRF's own ``validate()``."""
    klass = type(serializer)
    return (
        klass.to_internal_value is _to_internal_value
        and klass.validate_empty_values is Field.validate_empty_values
        and not serializer.read_only
        and klass.run_validators is noting_run_validators
        and not serializer.validators
        and klass.validate is serializers.Serializer.validate
    )


def _errors_of(outcome: RowOutcome) -> dict[str, Any] | None:
    return outcome.errors if outcome.stage is not None else None
