"""The bulk statements of the write, one per action and chunk.

PostgreSQL gets statements of its own: ``COPY`` for new rows, ``UPDATE ... FROM
unnest(<one array per column>)`` for changes, ``INSERT ... ON CONFLICT (<natural
key>) DO UPDATE ... RETURNING`` for upserts, and ``SELECT ... FOR [NO KEY] UPDATE`` to
lock the objects a chunk changes or deletes, in one order every writer shares. Other
databases get Django's ``bulk_create``/``bulk_update`` and plain reads: SQLite lets one
writer at a time, and a transaction that read before another committed cannot write.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import connections, models

from ..compat import raw_cursor
from .lookups import filter_in, in_batches

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
_TEXT_TYPES = ("varchar", "text", "char", "character", "citext")

Plan = list[tuple[str, models.Field, bool]]  # (attname, field, value needs no preparation)


class Statements:
    """The statements of one model on one database."""

    def __init__(self, model: type[models.Model], db: str, natural_key: Sequence[str]) -> None:
        self.model = model
        self.db = db
        self.connection = connections[db]
        self.postgresql = self.connection.vendor == "postgresql"
        meta = model._meta
        self.pk = meta.pk
        self.key_fields = [meta.get_field(name) for name in natural_key]
        self.qn = self.connection.ops.quote_name
        self.table = self.qn(meta.db_table)

    # -- locking and reading the targets --------------------------------------------------

    @cached_property
    def _order_sql(self) -> str:
        """The order objects are locked in: the natural key (as the unique index and
        ``ON CONFLICT`` meet them), else the primary key. Text compares by code point
        (``COLLATE "C"``), as Python sorts the rows of an upsert."""
        columns = self.key_fields or [self.pk]
        parts = []
        for field in columns:
            sql = self.qn(field.column)  # type: ignore[union-attr]
            db_type = (field.db_type(self.connection) or "").lower()  # type: ignore[union-attr]
            if db_type.startswith(_TEXT_TYPES):
                sql += ' COLLATE "C"'
            parts.append(sql)
        return ", ".join(parts)

    def lock(self, pks: list[Any], *, deleting: bool) -> set[Any]:
        """The primary keys among ``pks`` still in the table. On PostgreSQL they are
        locked until the transaction ends (``FOR UPDATE`` for a delete, ``FOR NO KEY
        UPDATE`` for a change, which lets other writers insert rows that refer to
        them), in the natural key's order, so concurrent writers queue instead of
        deadlocking."""
        if not pks:
            return set()
        if not self.postgresql:
            manager = self.model._base_manager.db_manager(self.db)
            found: set[Any] = set()
            for part in in_batches(pks, self.connection):
                found.update(filter_in(manager.all(), "pk", part).values_list("pk", flat=True))
            return found
        pk = self.qn(self.pk.column)  # type: ignore[union-attr]
        mode = "UPDATE" if deleting else "NO KEY UPDATE"
        sql = (
            f"SELECT {pk} FROM {self.table} WHERE {pk} = ANY(%s) "
            f"ORDER BY {self._order_sql} FOR {mode}"
        )
        prep = self.pk.get_db_prep_value  # type: ignore[union-attr]
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [[prep(pk, self.connection) for pk in pks]])
            return {row[0] for row in cursor.fetchall()}

    def existing_keys(self, keys: list[tuple]) -> dict[tuple, Any]:
        """``{natural key: pk}`` of the keys the table holds (an upsert's re-check where
        ``ON CONFLICT`` is not available)."""
        manager = self.model._base_manager.db_manager(self.db)
        names = [f.attname for f in self.key_fields]
        wanted = set(keys)
        out: dict[tuple, Any] = {}
        first = list({key[0] for key in wanted})
        for part in in_batches(first, self.connection):
            for pk, *values in filter_in(manager.all(), names[0], part).values_list("pk", *names):
                key = tuple(values)
                if key in wanted:
                    out[key] = pk
        return out

    def missing_related(self, rows_values: list[dict[str, Any]]) -> set[int]:
        """The positions of the rows that refer to an object (by a foreign key) that is
        not there: one query per foreign key."""
        gone: set[int] = set()
        for field in self.model._meta.concrete_fields:
            if not field.many_to_one and not field.one_to_one:
                continue
            attname = field.attname
            wanted = {v[attname] for v in rows_values if v.get(attname) is not None}
            if not wanted:
                continue
            target = field.target_field.attname  # type: ignore[union-attr]
            related = field.related_model._base_manager.db_manager(self.db)  # type: ignore[union-attr]
            found: set[Any] = set()
            for part in in_batches(list(wanted), self.connection):
                found.update(filter_in(related.all(), target, part).values_list(target, flat=True))
            for position, values in enumerate(rows_values):
                value = values.get(attname)
                if value is not None and value not in found:
                    gone.add(position)
        return gone

    # -- new rows: COPY ---------------------------------------------------------------------

    @cached_property
    def insert_plan(self) -> Plan | None:
        """The columns of a new row (without its primary key) when the model's rows can
        be written by statements of our own (PostgreSQL, an automatic primary key, no
        multi-table inheritance, no database defaults, generated fields or ``pre_save``
        logic), else ``None``. Values come straight from the staged values; fields
        whose database value is not the Python value go through ``get_db_prep_save``."""
        if not self.postgresql:
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
                return None  # pre_save sets these
            if type(f).pre_save not in (models.Field.pre_save, models.DateField.pre_save):
                return None  # file fields and other pre_save logic
            target = f.target_field if f.is_relation else f
            direct = isinstance(target, _DIRECT_FIELDS) and not isinstance(target, _PREP_FIELDS)
            plan.append((f.attname, f, direct))
        return plan

    def insert_values(self, values: dict[str, Any], plan: Plan) -> list[Any]:
        """A new row's column values in ``plan``'s order; missing ones take the default."""
        connection = self.connection
        out = []
        for attname, column, direct in plan:
            value = values[attname] if attname in values else column.get_default()
            if not direct and value is not None:
                value = column.get_db_prep_save(value, connection)
            out.append(value)
        return out

    @cached_property
    def _pick_direct(self) -> Any:
        """The insert plan's values of a row that has them all, when no column needs
        preparing (``insert_values`` otherwise): ``operator.itemgetter``, in C."""
        plan = self.insert_plan or []
        if len(plan) < 2 or not all(direct for _, _, direct in plan):
            return None  # calling None: TypeError, so insert_values decides
        return operator.itemgetter(*(attname for attname, _, _ in plan))

    def copy(self, rows_values: list[dict[str, Any]]) -> list[Any]:
        """``COPY`` the rows into the table; their new primary keys, in order (taken
        from the table's sequence first, in one query)."""
        plan = self.insert_plan
        assert plan is not None
        meta = self.model._meta
        columns = ", ".join(self.qn(c.column) for c in [meta.pk, *(f for _, f, _ in plan)])  # type: ignore[union-attr]
        # The sequence is named by an uncorrelated subquery, which PostgreSQL runs once
        # per statement; pg_get_serial_sequence() as nextval's own argument ran once per
        # row (3 ms against 0.7 ms per 1000 ids here).
        ids_sql = (
            "SELECT nextval((SELECT pg_get_serial_sequence(%s, %s)::regclass)) "
            "FROM generate_series(1, %s)"
        )
        connection = self.connection
        with connection.cursor() as cursor:
            cursor.execute(ids_sql, [self.table, meta.pk.column, len(rows_values)])  # type: ignore[union-attr]
            ids = [row[0] for row in cursor.fetchall()]
            copy_sql = f"COPY {self.table} ({columns}) FROM STDIN"
            with connection.wrap_database_errors, raw_cursor(cursor).copy(copy_sql) as copy:
                write_row = copy.write_row
                insert_values = self.insert_values
                pick = self._pick_direct
                for values, pk in zip(rows_values, ids, strict=True):
                    try:
                        # Every column given, none to prepare: the values as they are.
                        row = pick(values)  # type: ignore[misc]
                    except (KeyError, TypeError):  # TypeError: no pick for this plan
                        row = insert_values(values, plan)
                    write_row((pk, *row))
        return ids

    # -- changes: UPDATE ... FROM unnest ---------------------------------------------------------

    def _array_types(self, fields: list[models.Field]) -> str:
        return ", ".join(f"%s::{c.db_type(self.connection)}[]" for c in fields)

    def update_plan(self, names: tuple[str, ...]) -> tuple[str, list[models.Field]] | None:
        """``UPDATE ... FROM unnest(<one array per column>)`` on PostgreSQL.

        ``bulk_update`` builds a ``CASE WHEN pk = ... THEN ...`` per field per row,
        which PostgreSQL plans slowly for big chunks (about a thousand rows a second
        here); one array parameter per column costs no parsing at all.
        """
        if not self.postgresql or not names:
            return None
        meta = self.model._meta
        try:
            fields = [meta.get_field(name) for name in names]
        except FieldDoesNotExist:
            return None
        if any(not f.concrete or f.primary_key or getattr(f, "auto_now", False) for f in fields):
            return None
        qn = self.qn
        pk = meta.pk
        columns = [pk, *fields]
        names_sql = ", ".join(qn(c.column) for c in columns)  # type: ignore[union-attr]
        sets = ", ".join(f"{qn(f.column)} = v.{qn(f.column)}" for f in fields)  # type: ignore[union-attr]
        table = self.table
        sql = (
            f"UPDATE {table} SET {sets} FROM unnest({self._array_types(columns)}) "  # type: ignore[arg-type]
            f"AS v({names_sql}) WHERE {table}.{qn(pk.column)} = v.{qn(pk.column)}"  # type: ignore[union-attr]
        )
        return sql, fields  # type: ignore[return-value]

    def update(
        self, plan: tuple[str, list[models.Field]], pks: list[Any], values: list[dict]
    ) -> None:
        sql, fields = plan
        connection = self.connection
        pk_field = self.model._meta.pk
        params = [[pk_field.get_db_prep_save(pk, connection) for pk in pks]]  # type: ignore[union-attr]
        for column in fields:
            attname = column.attname
            params.append([column.get_db_prep_save(v[attname], connection) for v in values])
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    # -- upserts: INSERT ... ON CONFLICT DO UPDATE ... RETURNING -----------------------------------

    @cached_property
    def conflict_columns(self) -> list[models.Field] | None:
        """The natural key's fields a total unique constraint covers exactly (what
        ``ON CONFLICT`` needs to name), or ``None``."""
        if not self.postgresql or not self.key_fields or self.insert_plan is None:
            return None
        meta = self.model._meta
        by_name = {f.name: f for f in self.key_fields}
        sets = [(f.name,) for f in self.key_fields if f.unique]  # type: ignore[union-attr]
        sets += [tuple(names) for names in meta.unique_together]
        sets += [tuple(c.fields) for c in meta.total_unique_constraints]
        for names in sets:
            if names and set(names) <= set(by_name):
                return [by_name[name] for name in names]
        return None

    def upsert(
        self, rows_values: list[dict[str, Any]], given: tuple[str, ...]
    ) -> list[tuple[Any, bool]]:
        """Insert the rows, or update the fields ``given`` (attribute names) of the
        rows whose natural key is there already, in one statement: ``[(pk, created)]``
        per row, in order."""
        plan = self.insert_plan
        conflict = self.conflict_columns
        assert plan is not None and conflict is not None
        qn = self.qn
        fields = [f for _, f, _ in plan]
        names_sql = ", ".join(qn(f.column) for f in fields)
        conflict_sql = ", ".join(qn(f.column) for f in conflict)
        keyed = {f.attname for f in conflict}
        sets = [f for f in fields if f.attname in given and f.attname not in keyed]
        # A row that only names itself still returns (a no-op update), to say it exists.
        set_sql = ", ".join(f"{qn(f.column)} = EXCLUDED.{qn(f.column)}" for f in sets or conflict)
        key_sql = ", ".join(qn(f.column) for f in self.key_fields)  # type: ignore[union-attr]
        sql = (
            f"INSERT INTO {self.table} AS t ({names_sql}) "
            f"SELECT * FROM unnest({self._array_types(fields)}) "
            f"ON CONFLICT ({conflict_sql}) DO UPDATE SET {set_sql} "
            f"RETURNING t.{qn(self.pk.column)}, {key_sql}, (t.xmax = 0)"  # type: ignore[union-attr]
        )
        columns: list[list[Any]] = [[] for _ in fields]
        for values in rows_values:
            for column, value in zip(columns, self.insert_values(values, plan), strict=True):
                column.append(value)
        with self.connection.cursor() as cursor:
            cursor.execute(sql, columns)
            returned = cursor.fetchall()
        attnames = [f.attname for f in self.key_fields]  # type: ignore[union-attr]
        by_key = {tuple(row[1:-1]): (row[0], bool(row[-1])) for row in returned}
        out = []
        for values in rows_values:
            key = tuple(values[a] for a in attnames)
            if key not in by_key:  # pragma: no cover - a key the database stores otherwise
                raise RuntimeError(
                    f"The upsert of {self.model._meta.label} returned no row for {key!r}."
                )
            out.append(by_key[key])
        return out

    # -- constraints -----------------------------------------------------------------------------

    def constraints_immediate(self, immediate: bool) -> None:
        """PostgreSQL: check deferrable constraints (Django's foreign keys are ``DEFERRABLE
        INITIALLY DEFERRED``) at each statement, so a row that refers to an object deleted
        meanwhile is refused at its statement, where it can be isolated, not at commit.
        ``False`` defers them again (what Django's ``check_constraints`` does)."""
        if self.postgresql:
            with self.connection.cursor() as cursor:
                cursor.execute(f"SET CONSTRAINTS ALL {'IMMEDIATE' if immediate else 'DEFERRED'}")
