"""Writing a validated chunk with bulk operations, isolating the rows the database refuses.

The happy path is one statement per action per chunk. When the database refuses
a statement (another writer took a unique key after validation, a check
constraint, a protected foreign key), the chunk is rolled back to a savepoint and
bisected under savepoints until each refused row is alone; the others are
written, and each refused row gets an error on its own result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from itertools import groupby
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import DataError, IntegrityError, connections, models, transaction
from django.db.models.deletion import ProtectedError, RestrictedError

from .errors import RowErrors, merged, non_field_key
from .options import CREATE, DELETE, UPDATE
from .staged import StagedRow
from .validate import ChunkValidator

REFUSALS = (IntegrityError, DataError, ProtectedError, RestrictedError)
# Field types whose Python value psycopg adapts exactly as Django would store it.
_DIRECT_FIELDS = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.BooleanField,
    models.DateField,
    models.DecimalField,
    models.FloatField,
)
# ...except these subclasses, which convert (timezones, JSON, UUIDs...).
_PREP_FIELDS = (models.DateTimeField,)
# Below this many rows a multi-row INSERT costs no more than COPY's extra round trip.
COPY_MIN_ROWS = 50


@dataclass
class Written:
    """What writing a chunk did: the primary keys of the rows it created (by index),
    and the errors of the rows the database refused (by index)."""

    ids: dict[int, Any] = field(default_factory=dict)
    refused: dict[int, RowErrors] = field(default_factory=dict)


class ChunkWriter:
    """Writes the valid rows of chunks for one batch. Rows are read, never changed:
    writing the same rows again (after a rollback) does the same."""

    def __init__(self, *, validator: ChunkValidator) -> None:
        self.validator = validator
        self.model = validator.model
        self.db = validator.db
        self.manager = self.model._base_manager.db_manager(self.db)
        self.connection = connections[self.db]
        meta = self.model._meta
        self.field_names = {f.attname: f.name for f in meta.concrete_fields}

    def write(self, rows: list[StagedRow]) -> Written:
        """Write every row (each has an ``action``); the refused ones are in ``refused``."""
        written = Written()
        creates = [r for r in rows if r.action == CREATE]
        self._isolate(creates, self._create, written)
        updates = sorted((r for r in rows if r.action == UPDATE), key=lambda r: tuple(r.values))  # type: ignore[arg-type]
        for fields, group in groupby(updates, key=lambda r: tuple(r.values)):  # type: ignore[arg-type]
            self._isolate(list(group), self._updater(fields), written)
        deletes = [r for r in rows if r.action == DELETE]
        self._isolate(deletes, self._delete, written)
        return written

    def _isolate(
        self,
        rows: list[StagedRow],
        write: Callable[[list[StagedRow]], list[Any] | None],
        written: Written,
    ) -> None:
        if not rows:
            return
        try:
            with transaction.atomic(using=self.db):
                ids = write(rows)
        except REFUSALS as exc:
            if len(rows) == 1:
                written.refused[rows[0].index] = self._explain(rows[0], exc)
                return
            middle = len(rows) // 2
            self._isolate(rows[:middle], write, written)
            self._isolate(rows[middle:], write, written)
            return
        if ids is not None:
            written.ids.update(zip((r.index for r in rows), ids, strict=True))

    def _explain(self, row: StagedRow, exc: Exception) -> RowErrors:
        nfe = non_field_key()
        if isinstance(exc, ProtectedError | RestrictedError):
            names = sorted(
                {o._meta.verbose_name_plural for o in getattr(exc, "protected_objects", ())}
            )
            what = ", ".join(str(n) for n in names) or "other objects"
            target = row.instance or self.manager.filter(pk=row.pk).first()
            return merged(row.errors, {nfe: [f"Cannot delete {target}: {what} still refer to it."]})
        if isinstance(exc, IntegrityError) and row.action != DELETE:
            clash = self.validator.unique_clash(row.pk, self._state_of(row).get)
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

    # -- statements ----------------------------------------------------------------

    def _create(self, rows: list[StagedRow]) -> list[Any]:
        if self._copy_plan is not None and len(rows) >= COPY_MIN_ROWS:
            return self._copy_create(rows)
        objs = [self.model(**r.values) for r in rows]  # type: ignore[arg-type]
        self.manager.bulk_create(objs)
        return [obj.pk for obj in objs]

    @cached_property
    def _copy_plan(self) -> tuple[str, str, list[tuple[str, models.Field, bool]]] | None:
        """How to COPY new rows into the table on PostgreSQL, when the model allows it.

        ``bulk_create`` sends a multi-row ``INSERT ... RETURNING``; ``COPY`` is about
        three times faster here (DESIGN.md). The primary keys COPY cannot return
        are taken from the table's sequence first, in one query. Values come
        straight from the staged values; fields whose database value is not the
        Python value itself go through ``get_db_prep_save`` as Django would.
        """
        if self.connection.vendor != "postgresql":
            return None
        meta = self.model._meta
        pk = meta.pk
        if not isinstance(pk, models.AutoField | models.BigAutoField | models.SmallAutoField):
            return None
        fields = [f for f in meta.concrete_fields if f is not pk]
        if meta.parents or any(f.generated or f.has_db_default() for f in fields):
            return None
        plan = []
        for f in fields:
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                return None  # pre_save sets these: let bulk_create run it
            if type(f).pre_save not in (models.Field.pre_save, models.DateField.pre_save):
                return None  # file fields and other pre_save logic
            target = f.target_field if f.is_relation else f
            direct = isinstance(target, _DIRECT_FIELDS) and not isinstance(target, _PREP_FIELDS)
            plan.append((f.attname, f, direct))
        qn = self.connection.ops.quote_name
        columns = ", ".join(qn(f.column) for f in [pk, *fields])
        copy_sql = f"COPY {qn(meta.db_table)} ({columns}) FROM STDIN"
        ids_sql = "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)"
        return copy_sql, ids_sql, plan

    def _copy_create(self, rows: list[StagedRow]) -> list[Any]:
        copy_sql, ids_sql, plan = self._copy_plan  # type: ignore[misc]
        connection = self.connection
        meta = self.model._meta
        with connection.cursor() as cursor:
            cursor.execute(ids_sql, [meta.db_table, meta.pk.column, len(rows)])  # type: ignore[union-attr]
            ids = [row[0] for row in cursor.fetchall()]
            with connection.wrap_database_errors, cursor.cursor.copy(copy_sql) as copy:
                write_row = copy.write_row
                for row, pk in zip(rows, ids, strict=True):
                    write_row([pk, *self._copy_values(row.values, plan)])  # type: ignore[arg-type]
        return ids

    def _copy_values(self, values: dict[str, Any], plan: list[tuple[str, Any, bool]]) -> list[Any]:
        """A new row's column values for COPY, without its primary key."""
        connection = self.connection
        out = []
        for attname, column, direct in plan:
            value = values[attname] if attname in values else column.get_default()
            if not direct and value is not None:
                value = column.get_db_prep_save(value, connection)
            out.append(value)
        return out

    def _updater(self, attnames: tuple[str, ...]) -> Callable[[list[StagedRow]], None]:
        names = tuple(self.field_names.get(a, a) for a in attnames)
        plan = self._update_plan(names)

        def update(rows: list[StagedRow]) -> None:
            if not names:
                return
            if plan is not None and len(rows) >= COPY_MIN_ROWS:
                self._update_from_arrays(plan, rows)
                return
            objs = []
            for row in rows:
                obj = self.model(**row.values)  # type: ignore[arg-type]
                obj.pk = row.pk
                objs.append(obj)
            self.manager.bulk_update(objs, names)

        return update

    def _update_plan(self, names: tuple[str, ...]) -> tuple[str, list[Any]] | None:
        """``UPDATE ... FROM unnest(<one array per column>)`` on PostgreSQL.

        ``bulk_update`` builds a ``CASE WHEN pk = ... THEN ...`` per field per row,
        which PostgreSQL plans slowly for big chunks (about a thousand rows a
        second here); one array parameter per column costs no parsing at all.
        """
        if self.connection.vendor != "postgresql" or not names:
            return None
        meta = self.model._meta
        try:
            fields = [meta.get_field(name) for name in names]
        except FieldDoesNotExist:
            return None
        if any(not f.concrete or f.primary_key or getattr(f, "auto_now", False) for f in fields):
            return None
        qn = self.connection.ops.quote_name
        pk = meta.pk
        columns = [pk, *fields]
        arrays = ", ".join(f"%s::{c.db_type(self.connection)}[]" for c in columns)
        names_sql = ", ".join(qn(c.column) for c in columns)
        sets = ", ".join(f"{qn(f.column)} = v.{qn(f.column)}" for f in fields)
        table = qn(meta.db_table)
        sql = (
            f"UPDATE {table} SET {sets} FROM unnest({arrays}) AS v({names_sql}) "
            f"WHERE {table}.{qn(pk.column)} = v.{qn(pk.column)}"  # type: ignore[union-attr]
        )
        return sql, fields

    def _update_from_arrays(self, plan: tuple[str, list[Any]], rows: list[StagedRow]) -> None:
        sql, fields = plan
        connection = self.connection
        pk_field = self.model._meta.pk
        params = [[pk_field.get_db_prep_save(r.pk, connection) for r in rows]]  # type: ignore[union-attr]
        for column in fields:
            attname = column.attname
            params.append([column.get_db_prep_save(r.values[attname], connection) for r in rows])  # type: ignore[index]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    def _delete(self, rows: list[StagedRow]) -> None:
        self.manager.filter(pk__in=[r.pk for r in rows]).delete()
