"""Writing a validated chunk with bulk operations, isolating the rows the database refuses.

The happy path is one statement per action per chunk. When the database refuses
a statement (another writer took a unique key after validation, a check
constraint, a protected foreign key), the chunk is rolled back to a savepoint and
bisected under savepoints until each refused row is alone; the others are
written, and each refused row gets an error on its own result.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from itertools import groupby
from typing import Any

from django.db import DataError, IntegrityError, connections, models, transaction
from django.db.models.deletion import ProtectedError, RestrictedError

from .validate import CREATE, DELETE, NON_FIELD, UPDATE, ChunkValidator, PreparedRow, add_error

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


class ChunkWriter:
    """Writes the valid rows of chunks for one batch."""

    def __init__(self, *, validator: ChunkValidator) -> None:
        self.validator = validator
        self.model = validator.model
        self.db = validator.db
        self.manager = self.model._base_manager.db_manager(self.db)
        self.connection = connections[self.db]

    def write(self, rows: list[PreparedRow]) -> list[PreparedRow]:
        """Write every row; return those the database refused (their ``errors`` set)."""
        refused: list[PreparedRow] = []
        creates = [r for r in rows if r.action == CREATE]
        refused += self._isolate(creates, self._create)
        updates = sorted((r for r in rows if r.action == UPDATE), key=lambda r: r.update_fields)
        for fields, group in groupby(updates, key=lambda r: r.update_fields):
            refused += self._isolate(list(group), self._updater(fields))
        deletes = [r for r in rows if r.action == DELETE]
        refused += self._isolate(deletes, self._delete)
        return refused

    def _isolate(
        self, rows: list[PreparedRow], write: Callable[[list[PreparedRow]], None]
    ) -> list[PreparedRow]:
        if not rows:
            return []
        try:
            with transaction.atomic(using=self.db):
                write(rows)
            return []
        except REFUSALS as exc:
            for row in rows:
                if row.action == CREATE:
                    # The statement was rolled back: keys it handed out are void.
                    row.pk = None
                    row.instance = None
            if len(rows) == 1:
                self._explain(rows[0], exc)
                return rows
            middle = len(rows) // 2
            return self._isolate(rows[:middle], write) + self._isolate(rows[middle:], write)

    def _explain(self, row: PreparedRow, exc: Exception) -> None:
        if isinstance(exc, ProtectedError | RestrictedError):
            names = sorted(
                {o._meta.verbose_name_plural for o in getattr(exc, "protected_objects", ())}
            )
            what = ", ".join(str(n) for n in names) or "other objects"
            add_error(row, NON_FIELD, f"Cannot delete {row.instance}: {what} still refer to it.")
            return
        if (
            isinstance(exc, IntegrityError)
            and row.action != DELETE
            and self.validator.check_row_unique(row)
        ):
            return
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        add_error(row, NON_FIELD, f"The database refused this row: {detail}")

    # -- statements ----------------------------------------------------------------

    def _create(self, rows: list[PreparedRow]) -> None:
        if self._copy_plan is not None and len(rows) >= COPY_MIN_ROWS:
            self._copy_create(rows)
            return
        objs = [r.get_instance(self.model) for r in rows]
        self.manager.bulk_create(objs)
        for row, obj in zip(rows, objs, strict=True):
            row.pk = obj.pk

    @cached_property
    def _copy_plan(self) -> tuple[str, str, list[tuple[Any, ...]]] | None:
        """How to COPY new rows into the table on PostgreSQL, when the model allows it.

        ``bulk_create`` sends a multi-row ``INSERT ... RETURNING``; ``COPY`` is about
        three times faster here (DESIGN.md). The primary keys COPY cannot return
        are taken from the table's sequence first, in one query. Values come
        straight from the validated data; fields whose database value is not the
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
            plan.append((f.name, f.attname, f.is_relation, f, direct))
        qn = self.connection.ops.quote_name
        columns = ", ".join(qn(f.column) for f in [pk, *fields])
        copy_sql = f"COPY {qn(meta.db_table)} ({columns}) FROM STDIN"
        ids_sql = "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)"
        return copy_sql, ids_sql, plan

    def _copy_create(self, rows: list[PreparedRow]) -> None:
        copy_sql, ids_sql, plan = self._copy_plan  # type: ignore[misc]
        connection = self.connection
        meta = self.model._meta
        with connection.cursor() as cursor:
            cursor.execute(ids_sql, [meta.db_table, meta.pk.column, len(rows)])  # type: ignore[union-attr]
            ids = [row[0] for row in cursor.fetchall()]
            with connection.wrap_database_errors, cursor.cursor.copy(copy_sql) as copy:
                write_row = copy.write_row
                for row, pk in zip(rows, ids, strict=True):
                    values = row.copy_values
                    if values is None or row.instance is not None:
                        values = self.copy_values(row)
                    write_row([pk, *values])
        for row, pk in zip(rows, ids, strict=True):
            row.pk = pk
            if row.instance is not None:
                row.instance.pk = pk
                row.instance._state.adding = False

    def copy_values(self, row: PreparedRow) -> list[Any]:
        """A new row's column values for COPY, without its primary key."""
        _, _, plan = self._copy_plan  # type: ignore[misc]
        connection = self.connection
        if row.instance is not None:
            data = {f[1]: getattr(row.instance, f[1]) for f in plan}
        else:
            data = row.validated  # type: ignore[assignment]
        out = []
        for name, attname, is_relation, field, direct in plan:
            if name in data:
                value = data[name]
                if is_relation and value is not None:
                    value = getattr(value, field.target_field.attname)
            elif attname in data:
                value = data[attname]
            else:
                value = field.get_default()
            if not direct and value is not None:
                value = field.get_db_prep_save(value, connection)
            out.append(value)
        return out

    def prepare(self, rows: list[PreparedRow]) -> None:
        """Work for a chunk that needs no database, done ahead (see run.prefetched)."""
        if self._copy_plan is None or len(rows) < COPY_MIN_ROWS:
            return  # (an empty call settles the cached plan)
        for row in rows:
            if row.action == CREATE and row.errors is None and row.instance is None:
                row.copy_values = self.copy_values(row)

    def _updater(self, fields: tuple[str, ...]) -> Callable[[list[PreparedRow]], None]:
        plan = self._update_plan(fields)

        def update(rows: list[PreparedRow]) -> None:
            if not fields:
                return
            objs = [r.instance for r in rows]
            if plan is not None and len(objs) >= COPY_MIN_ROWS:
                self._update_from_arrays(plan, objs)  # type: ignore[arg-type]
            else:
                self.manager.bulk_update(objs, fields)  # type: ignore[misc]

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
        fields = [meta.get_field(name) for name in names]
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
        return sql, columns

    def _update_from_arrays(self, plan: tuple[str, list[Any]], objs: list[Any]) -> None:
        sql, columns = plan
        connection = self.connection
        params = [
            [column.get_db_prep_save(getattr(obj, column.attname), connection) for obj in objs]
            for column in columns
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    def _delete(self, rows: list[PreparedRow]) -> None:
        self.manager.filter(pk__in=[r.instance.pk for r in rows]).delete()  # type: ignore[union-attr]
