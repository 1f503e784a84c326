"""Model instances for written rows: what a result's ``data`` and ``after_write`` see.

Validation keeps the objects it had at hand on the staged rows (the target with the
changes applied; the related objects of a new row). A chunk read back from JSON has
none: they are built from the staged values, and fetched — one query per chunk and
relation — where they must come from the database.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models import prefetch_related_objects

from ..compat import mark_saved
from .options import CREATE, DELETE, UPDATE
from .staged import StagedRow

if TYPE_CHECKING:
    from .validate import ChunkValidator
    from .write import Written


class RowObjects:
    """Instances of one model for staged rows."""

    def __init__(self, validator: ChunkValidator) -> None:
        self.model = validator.model
        self.db = validator.db
        self.manager = self.model._base_manager.db_manager(validator.db)
        self.relations = validator.targets.select_related

    def _fetch(self, pks: Iterable[Any]) -> dict[Any, models.Model]:
        wanted = list(pks)
        if not wanted:
            return {}
        found = self.manager.select_related(*self.relations).filter(pk__in=wanted)
        return {obj.pk: obj for obj in found}

    def before_delete(self, rows: list[StagedRow]) -> dict[int, models.Model]:
        """The objects the delete rows name, while they still exist."""
        deletes = [row for row in rows if row.action == DELETE]
        fetched = self._fetch(row.pk for row in deletes if row.instance is None)
        out = {}
        for row in deletes:
            obj = row.instance if row.instance is not None else fetched.get(row.pk)
            if obj is not None:
                out[row.index] = obj
        return out

    def of(
        self,
        rows: list[StagedRow],
        written: Written,
        *,
        before: dict[int, models.Model] | None = None,
        saved: bool,
    ) -> dict[int, models.Model]:
        """``{index: instance}`` of the rows (without errors) the write did not refuse.
        ``saved``: the rows were written, so new rows have their primary keys."""
        model = self.model
        out: dict[int, models.Model] = {}
        unrelated: list[models.Model] = []
        to_fetch: list[StagedRow] = []
        for row in rows:
            if row.errors is not None or row.index in written.refused:
                continue
            if written.action_of(row) != row.action:
                # An upsert the database decided otherwise (a key created or deleted
                # meanwhile): the object as it is now.
                to_fetch.append(row)
                continue
            if row.action == CREATE:
                obj = model(**row.values)  # type: ignore[arg-type]
                if saved:
                    obj.pk = written.ids.get(row.index)
                    mark_saved(obj, self.db)
                if row.related:
                    for name, related in row.related.items():
                        setattr(obj, name, related)
                elif self.relations:
                    unrelated.append(obj)
                out[row.index] = obj
            elif row.action == DELETE and before is not None and row.index in before:
                out[row.index] = before[row.index]
            elif row.instance is not None:
                out[row.index] = row.instance
            elif row.action in (UPDATE, DELETE):
                to_fetch.append(row)
        fetched = self._fetch(written.ids.get(row.index, row.pk) for row in to_fetch)
        for row in to_fetch:
            pk = written.ids.get(row.index, row.pk)
            obj = fetched.get(pk)
            if obj is None:
                continue
            if written.action_of(row) == row.action:
                for attname, value in (row.values or {}).items():
                    setattr(obj, attname, value)
            out[row.index] = obj
            unrelated.append(obj)
        if unrelated and self.relations:
            # Related objects the serializer will read: one query per relation.
            prefetch_related_objects(unrelated, *self.relations)
        return out
