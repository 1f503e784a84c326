"""Writing a validated chunk with bulk operations, correct under concurrent writers.

The happy path is one statement per action per chunk (see ``statements``). Between
validation and the write the database may have changed; the write finds out itself,
per chunk, never per row:

- update/delete: the objects are locked first (in the natural key's order, so
  concurrent writers queue instead of deadlocking) and the ones that vanished are
  those rows' errors, in the words validation uses ("No product with sku=X.");
- upsert: a natural key another writer created meanwhile is updated, not refused
  (``ON CONFLICT`` on PostgreSQL, a re-check inside the transaction elsewhere); each
  row is reported as what the database did;
- delete: objects something still refers to are refused as validation refuses them
  (``protect``);
- anything else the database refuses (a unique key taken meanwhile, a related object
  deleted meanwhile, a check constraint): the statement is rolled back to a savepoint
  and the rows are bisected under savepoints until each refused row is alone; the
  others are written, and each refused row gets an error on its own result.

Foreign keys are checked at each statement (``SET CONSTRAINTS ALL IMMEDIATE`` on
PostgreSQL) so that such a refusal happens where it can be isolated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from django.db import DataError, IntegrityError, transaction

from .errors import RowErrors, merged, non_field_key
from .options import CREATE, DELETE, UPDATE, UPSERT
from .protect import REFUSED_DELETES, referring_names, refusal_message
from .staged import StagedRow
from .statements import Statements
from .validate import ChunkValidator

REFUSALS = (IntegrityError, DataError, *REFUSED_DELETES)
# Below this many rows a multi-row INSERT costs no more than COPY's extra round trip.
COPY_MIN_ROWS = 50

Outcome = list[tuple[Any, str]] | None  # per row written: (pk, what was done), or nothing


@dataclass
class Written:
    """What writing a chunk did: the primary keys of the rows it created or upserted
    (by index), what it did where that differs from the row's staged ``action`` (an
    upsert row whose key another writer created meanwhile was updated), and the errors
    of the rows the database refused (by index)."""

    ids: dict[int, Any] = field(default_factory=dict)
    refused: dict[int, RowErrors] = field(default_factory=dict)
    actions: dict[int, str] = field(default_factory=dict)
    results: list[Any] | None = None  # the chunk's results, once rendered in its transaction

    def action_of(self, row: StagedRow) -> str | None:
        return self.actions.get(row.index, row.action)


class ChunkWriter:
    """Writes the valid rows of chunks for one batch. Rows are read, never changed:
    writing the same rows again (after a rollback) does the same."""

    def __init__(self, *, validator: ChunkValidator) -> None:
        self.validator = validator
        self.model = validator.model
        self.db = validator.db
        self.manager = self.model._base_manager.db_manager(self.db)
        self.statements = Statements(self.model, self.db, validator.natural_key)
        self.field_names = {f.attname: f.name for f in self.model._meta.concrete_fields}
        self.key_attnames = [f.attname for f in validator.targets.key_fields]

    def write(self, rows: list[StagedRow]) -> Written:
        """Write every row (each has an ``action``); the refused ones are in ``refused``."""
        written = Written()
        statements = self.statements
        statements.constraints_immediate(True)
        creates = self._related_there([r for r in rows if r.action == CREATE], written)
        updates = self._related_there([r for r in rows if r.action == UPDATE], written)
        if self.validator.mode == UPSERT:
            self._upsert(creates + updates, written)
        else:
            self._isolate(self._in_key_order(creates), self._create, written)
            self._update(updates, written)
        self._delete([r for r in rows if r.action == DELETE], written)
        statements.constraints_immediate(False)
        return written

    def _in_key_order(self, rows: list[StagedRow]) -> list[StagedRow]:
        """New rows in the natural key's order: two writers inserting overlapping keys
        then wait for each other instead of deadlocking in the unique index."""
        names = self.key_attnames
        if not names or len(rows) < 2:
            return rows
        if len(names) == 1:  # the same order as by 1-tuples, with one call less per row
            name = names[0]
            return sorted(rows, key=lambda r: _sortable(r.values.get(name)))  # type: ignore[union-attr]
        return sorted(rows, key=lambda r: tuple(_sortable(r.values.get(n)) for n in names))  # type: ignore[union-attr]

    def _isolate(
        self,
        rows: list[StagedRow],
        write: Callable[[list[StagedRow]], Outcome],
        written: Written,
    ) -> None:
        if not rows:
            return
        try:
            with transaction.atomic(using=self.db):
                outcome = write(rows)
        except REFUSALS as exc:
            if len(rows) == 1:
                written.refused[rows[0].index] = self._explain(rows[0], exc)
                return
            middle = len(rows) // 2
            self._isolate(rows[:middle], write, written)
            self._isolate(rows[middle:], write, written)
            return
        if outcome is not None:
            for row, (pk, action) in zip(rows, outcome, strict=True):
                written.ids[row.index] = pk
                if action != row.action:
                    written.actions[row.index] = action

    def _explain(self, row: StagedRow, exc: Exception) -> RowErrors:
        nfe = non_field_key()
        if isinstance(exc, REFUSED_DELETES):
            target = row.instance or self.manager.filter(pk=row.pk).first()
            return merged(row.errors, {nfe: [refusal_message(target, referring_names(exc))]})
        if isinstance(exc, IntegrityError) and row.action != DELETE:
            state = self._state_of(row)
            clash = self.validator.unique_clash(row.pk, state.get)
            if clash is None:
                clash = self.validator.related_vanished(row.source, state.get)
            if clash is not None:
                return merged(row.errors, {clash[0]: [clash[1]]})
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return merged(row.errors, {nfe: [f"The database refused this row: {detail}"]})

    def _state_of(self, row: StagedRow) -> dict[str, Any]:
        """The row's attributes as it would write them (attribute name -> value)."""
        if row.action == CREATE:
            return dict(row.values or {})
        if row.instance is not None:
            return row.instance.__dict__
        target = self.manager.filter(pk=row.pk).first()
        state = dict(target.__dict__) if target is not None else {}
        state.update(row.values or {})
        return state

    def _vanished(
        self, rows: list[StagedRow], reached: set[Any], written: Written
    ) -> list[StagedRow]:
        """The rows whose object is still there; the others fail as validation fails a
        row whose object is not there."""
        live = []
        for row in rows:
            if row.pk in reached:
                live.append(row)
            else:
                name, message = self.validator.missing_target(row.source)
                written.refused[row.index] = merged(row.errors, {name: [message]})
        return live

    def _related_there(self, rows: list[StagedRow], written: Written) -> list[StagedRow]:
        """Where foreign keys are only checked at commit (SQLite), the rows whose related
        objects are still there, checked inside the transaction; the others fail as
        validation fails a row naming an object that is not there. (PostgreSQL checks
        them at each statement.)"""
        if self.statements.postgresql or not rows:
            return rows
        gone = self.statements.missing_related([r.values for r in rows])  # type: ignore[misc]
        if not gone:
            return rows
        kept = []
        for position, row in enumerate(rows):
            if position not in gone:
                kept.append(row)
                continue
            clash = self.validator.related_vanished(row.source, row.values.get)  # type: ignore[union-attr]
            name, message = clash or (
                non_field_key(),
                "The database refused this row: an object it refers to is not there.",
            )
            written.refused[row.index] = merged(row.errors, {name: [message]})
        return kept

    # -- create ------------------------------------------------------------------------------

    def _create(self, rows: list[StagedRow]) -> Outcome:
        if self.statements.insert_plan is not None and len(rows) >= COPY_MIN_ROWS:
            ids = self.statements.copy([r.values for r in rows])  # type: ignore[misc]
        else:
            objs = [self.model(**r.values) for r in rows]  # type: ignore[arg-type]
            self.manager.bulk_create(objs)
            ids = [obj.pk for obj in objs]
        return [(pk, CREATE) for pk in ids]

    # -- update ------------------------------------------------------------------------------

    def _update(self, rows: list[StagedRow], written: Written) -> None:
        if not rows:
            return
        reached = self.statements.lock([r.pk for r in rows], deleting=False)
        live = self._vanished(rows, reached, written)
        live.sort(key=lambda r: tuple(r.values))  # type: ignore[arg-type]
        for fields, group in groupby(live, key=lambda r: tuple(r.values)):  # type: ignore[arg-type]
            self._isolate(list(group), self._updater(fields), written)

    def _updater(self, attnames: tuple[str, ...]) -> Callable[[list[StagedRow]], Outcome]:
        names = tuple(self.field_names.get(a, a) for a in attnames)
        plan = self.statements.update_plan(names)

        def update(rows: list[StagedRow]) -> Outcome:
            if not names:
                return None
            if plan is not None and len(rows) >= COPY_MIN_ROWS:
                self.statements.update(plan, [r.pk for r in rows], [r.values for r in rows])  # type: ignore[misc]
                return None
            objs = []
            for row in rows:
                obj = self.model(**row.values)  # type: ignore[arg-type]
                obj.pk = row.pk
                objs.append(obj)
            self.manager.bulk_update(objs, names)
            return None

        return update

    # -- upsert ------------------------------------------------------------------------------

    def _upsert(self, rows: list[StagedRow], written: Written) -> None:
        """Create the rows whose natural key is new, update the others, whatever
        validation saw: the database decides, row by row."""
        if not rows:
            return
        rows = self._in_key_order(rows)
        if self.statements.conflict_columns is not None:
            groups: dict[tuple[str, ...], list[StagedRow]] = {}
            for row in rows:
                groups.setdefault(tuple(sorted(row.values)), []).append(row)  # type: ignore[arg-type]
            for given, group in groups.items():
                self._isolate(group, self._upserter(given), written)
            return
        # Elsewhere: which keys are there, read inside the transaction (SQLite lets no
        # other writer in before this one commits), then create or update.
        names = self.key_attnames
        existing = self.statements.existing_keys([tuple(r.values[n] for n in names) for r in rows])  # type: ignore[index]
        creates, updates = [], []
        for row in rows:
            pk = existing.get(tuple(row.values[n] for n in names))  # type: ignore[index]
            if pk is None:
                creates.append(row)
            else:
                updates.append((row, pk))
        self._isolate(creates, self._create, written)
        by_fields: dict[tuple[str, ...], list[tuple[StagedRow, Any]]] = {}
        for row, pk in updates:
            by_fields.setdefault(tuple(row.values), []).append((row, pk))  # type: ignore[arg-type]
        for fields, pairs in by_fields.items():
            self._isolate(
                [row for row, _ in pairs],
                self._updater_to(fields, dict((row.index, pk) for row, pk in pairs)),
                written,
            )

    def _upserter(self, given: tuple[str, ...]) -> Callable[[list[StagedRow]], Outcome]:
        def upsert(rows: list[StagedRow]) -> Outcome:
            done = self.statements.upsert([r.values for r in rows], given)  # type: ignore[misc]
            return [(pk, CREATE if created else UPDATE) for pk, created in done]

        return upsert

    def _updater_to(
        self, fields: tuple[str, ...], pks: dict[int, Any]
    ) -> Callable[[list[StagedRow]], Outcome]:
        """Update rows whose object was found by its natural key at the write."""
        names = tuple(self.field_names.get(a, a) for a in fields)

        def update(rows: list[StagedRow]) -> Outcome:
            objs = []
            for row in rows:
                obj = self.model(**row.values)  # type: ignore[arg-type]
                obj.pk = pks[row.index]
                objs.append(obj)
            if names:
                self.manager.bulk_update(objs, names)
            return [(obj.pk, UPDATE) for obj in objs]

        return update

    # -- delete ------------------------------------------------------------------------------

    def _delete(self, rows: list[StagedRow], written: Written) -> None:
        if not rows:
            return
        reached = self.statements.lock([r.pk for r in rows], deleting=True)
        live = self._vanished(rows, reached, written)
        # Refused as validation refuses them: something came to refer to them meanwhile.
        refused = self.validator.targets.protection.refused(r.pk for r in live)
        rest = []
        for row in live:
            names = refused.get(row.pk)
            if names is None:
                rest.append(row)
                continue
            target = row.instance or self.manager.filter(pk=row.pk).first()
            written.refused[row.index] = merged(
                row.errors, {non_field_key(): [refusal_message(target, names)]}
            )
        self._isolate(rest, self._delete_rows, written)

    def _delete_rows(self, rows: list[StagedRow]) -> Outcome:
        # Django's Collector: cascades, signals and the RESTRICT rules stay Django's.
        self.manager.filter(pk__in=[r.pk for r in rows]).delete()
        return None


def _sortable(value: Any) -> tuple[bool, Any]:
    return (value is not None, value)
