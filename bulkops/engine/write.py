"""Writing a validated chunk with bulk operations, isolating the rows the database refuses.

The happy path is one statement per action per chunk. When the database refuses
a statement (another writer took a unique key after validation, a check
constraint, a protected foreign key), the chunk is rolled back to a savepoint and
bisected under savepoints until each refused row is alone; the others are
written, and each refused row gets an error on its own result.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby
from django.db import DataError, IntegrityError, connections, transaction
from django.db.models.deletion import ProtectedError, RestrictedError

from .validate import CREATE, DELETE, NON_FIELD, UPDATE, ChunkValidator, PreparedRow, add_error

REFUSALS = (IntegrityError, DataError, ProtectedError, RestrictedError)


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
                    row.instance.pk = None  # type: ignore[union-attr]
                    row.instance._state.adding = True  # type: ignore[union-attr]
            if len(rows) == 1:
                self._explain(rows[0], exc)
                return rows
            middle = len(rows) // 2
            return self._isolate(rows[:middle], write) + self._isolate(rows[middle:], write)

    def _explain(self, row: PreparedRow, exc: Exception) -> None:
        if isinstance(exc, ProtectedError | RestrictedError):
            names = sorted({o._meta.verbose_name_plural for o in getattr(exc, "protected_objects", ())})
            what = ", ".join(str(n) for n in names) or "other objects"
            add_error(row, NON_FIELD, f"Cannot delete {row.instance}: {what} still refer to it.")
            return
        if isinstance(exc, IntegrityError) and row.action != DELETE:
            if self.validator.check_row_unique(row):
                return
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        add_error(row, NON_FIELD, f"The database refused this row: {detail}")

    # -- statements ----------------------------------------------------------------

    def _create(self, rows: list[PreparedRow]) -> None:
        self.manager.bulk_create([r.instance for r in rows])  # type: ignore[misc]

    def _updater(self, fields: tuple[str, ...]) -> Callable[[list[PreparedRow]], None]:
        def update(rows: list[PreparedRow]) -> None:
            if fields:
                self.manager.bulk_update([r.instance for r in rows], fields)  # type: ignore[misc]

        return update

    def _delete(self, rows: list[PreparedRow]) -> None:
        self.manager.filter(pk__in=[r.instance.pk for r in rows]).delete()  # type: ignore[union-attr]

