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

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.db import models, router
from rest_framework import serializers
from rest_framework.fields import Field, empty
from rest_framework.relations import ManyRelatedField, PrimaryKeyRelatedField, SlugRelatedField
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from .attributes import Attributes
from .columns import ColumnPlan, ValidatedColumns
from .errors import add_error, merged, non_field_key
from .lookups import (
    RelationResolver,
    guard_related_fields,
)
from .options import CREATE, DELETE, UPDATE, UPSERT
from .outcome import RowOutcome, compose, validate_row
from .rows import SourceRow
from .serializer import (
    SURROGATE_CHECK,
    _to_internal_value,
    batch_serializer_class,
    field_plan,
    noting_run_validators,
)
from .staged import StagedChunk, StagedRow
from .targets import Targets
from .unique import UniqueCheck, key_text, take_unique_checks

TARGET = "target"  # the constraint name of "one object, named by two rows"


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
        self.targets = Targets(
            model=self.model,
            mode=mode,
            natural_key=self.natural_key,
            queryset=self.queryset,
            db=self.db,
            serializer=self.serializer,
            check_target=check_target,
        )
        self.attributes = Attributes(
            self.model, (a for check in self.unique_checks for a in check.attnames)
        )

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
        nameless: dict[int, list[str]] = {}  # upsert rows without their natural key
        if self.mode != CREATE:
            keys[TARGET] = self.targets.find(rows, blocked, nameless)
            if self.check_target is not None:
                blocked.update(self.targets.check_permissions(rows))
        if self.mode == DELETE:
            self.targets.check_protected(rows)
        else:
            keys.update(self._validate_fields(rows, blocked))
        for index, names in nameless.items():
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
        # validate_row and stage_values would make of them, without their steps.
        whole = columns is not None and _columns_decide(serializer)
        keys = cast(tuple[str, ...], tuple(self.column_plan.keys))  # all named when answered
        shape = self.attributes.shape_of(keys) if whole else None
        for position, row in enumerate(validated):
            if whole and row.instance is None and row.errors is None:
                answer = columns.answered(position)  # type: ignore[union-attr]
                if answer is not None:
                    if shape is None:
                        self.attributes.stage_values(
                            row, dict(zip(keys, answer, strict=True)), before
                        )
                    else:
                        self.attributes.stage_new(row, shape, answer)
                    continue
            serializer.instance = row.instance
            serializer.initial_data = row.source
            outcome = validate_row(serializer, row.source, fields_only=row.index in nameless)
            if outcome.stage is None and row.errors is None:
                self.attributes.stage_values(row, outcome.value, before)
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
        # A new row's exact text is its own key_text (unless it holds a NUL): no calls.
        own_text = single is not None and check.lookup == "exact"
        for row in rows:
            if row.action is None or row.errors is not None:
                continue
            if own_text and row.instance is None:
                value = row.values.get(single)  # type: ignore[union-attr, arg-type]
                if type(value) is str and "\x00" not in value:
                    batch_keys.append([value, row.row if row.row is not None else row.index])
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

    def missing_target(self, source: Mapping[str, Any]) -> tuple[str, str]:
        """After a write found no object: what validation says of such a row."""
        return self.targets.missing_target(source)

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
