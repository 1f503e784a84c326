"""Which objects a delete would be refused for: other objects still refer to them.

Django's ``Collector`` decides what ``delete()`` may do: a ``PROTECT`` foreign key
refuses the delete, ``RESTRICT`` refuses it unless the referring object is deleted too
(by a cascade of the same delete). Validation and the write both ask here, so a dry
run says what the real run does, in the same words:

- one query per relation that protects the model directly (``PROTECT``);
- for models where a refusal can also come from further away (``RESTRICT``, a cascade
  that reaches a protected model, generic relations), Django's own ``Collector`` on the
  rest, narrowed down to each refused object (it only reads until asked to delete).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db import models
from django.db.models.deletion import (
    CASCADE,
    DO_NOTHING,
    PROTECT,
    SET_DEFAULT,
    SET_NULL,
    Collector,
    ProtectedError,
    RestrictedError,
)

from ..compat import candidate_relations_to_delete

REFUSED_DELETES = (ProtectedError, RestrictedError)
# on_delete handlers that never refuse, nor reach further.
_HARMLESS = (DO_NOTHING, SET_NULL, SET_DEFAULT)


def refusal_message(target: Any, names: Iterable[str]) -> str:
    """The sentence a refused delete row gets (validation, dry run and write alike)."""
    what = ", ".join(sorted({str(n) for n in names})) or "other objects"
    return f"Cannot delete {target}: {what} still refer to it."


def referring_names(exc: Exception) -> list[str]:
    """The kinds of objects a ``ProtectedError``/``RestrictedError`` names."""
    objects: Any = getattr(exc, "protected_objects", None)
    if not objects:
        objects = getattr(exc, "restricted_objects", None) or ()
    return sorted({str(obj._meta.verbose_name_plural) for obj in objects})


class Protection:
    """The delete refusals of one model, found set-based."""

    def __init__(self, model: type[models.Model], db: str) -> None:
        self.model = model
        self.db = db
        self.direct = [
            rel
            for rel in candidate_relations_to_delete(model)
            if rel.field.remote_field.on_delete is PROTECT  # type: ignore[union-attr]
        ]
        self.needs_collector = _may_refuse_further(model, set())

    def refused(
        self, pks: Iterable[Any], *, collected: Callable[[list[Any]], Any] | None = None
    ) -> dict[Any, list[str]]:
        """``{pk: [kinds of objects that refer to it]}`` for the objects ``pks`` a delete
        would be refused for: one query per protecting relation, and, where refusals
        may come from further away, the ``Collector`` on the rest."""
        wanted = list(dict.fromkeys(pks))
        out: dict[Any, set[str]] = {}
        if not wanted:
            return {}
        for rel in self.direct:
            field = rel.field
            related = rel.related_model
            name = str(related._meta.verbose_name_plural)  # type: ignore[union-attr]
            manager = related._base_manager.db_manager(self.db)  # type: ignore[union-attr]
            if field.target_field.primary_key:  # type: ignore[union-attr]
                found = manager.filter(**{f"{field.attname}__in": wanted}).values_list(
                    field.attname, flat=True
                )
            else:
                path = f"{field.name}__pk"
                found = manager.filter(**{f"{path}__in": wanted}).values_list(path, flat=True)
            for pk in found.order_by().distinct():
                out.setdefault(pk, set()).add(name)
        if self.needs_collector:
            rest = [pk for pk in wanted if pk not in out]
            for pk, names in self._collect(rest).items():
                out.setdefault(pk, set()).update(names)
        return {pk: sorted(names) for pk, names in out.items()}

    def _collect(self, pks: list[Any]) -> dict[Any, list[str]]:
        """What Django's ``Collector`` refuses among ``pks``, halving the set until each
        refused object is alone (it raises for the whole set)."""
        if not pks:
            return {}
        collector = Collector(using=self.db, origin=None)
        try:
            collector.collect(self.model._base_manager.db_manager(self.db).filter(pk__in=pks))
        except REFUSED_DELETES as exc:
            if len(pks) == 1:
                return {pks[0]: referring_names(exc)}
            middle = len(pks) // 2
            return {**self._collect(pks[:middle]), **self._collect(pks[middle:])}
        return {}


def _may_refuse_further(model: type[models.Model], seen: set[type[models.Model]]) -> bool:
    """Can a delete of ``model`` be refused other than by a direct ``PROTECT``?"""
    if model in seen:
        return False
    seen.add(model)
    if any(hasattr(f, "bulk_related_objects") for f in model._meta.private_fields):
        return True  # generic relations: leave it to the Collector
    for rel in candidate_relations_to_delete(model):
        on_delete = rel.field.remote_field.on_delete  # type: ignore[union-attr]
        if on_delete is PROTECT or on_delete in _HARMLESS:
            continue
        if on_delete is CASCADE:
            if _may_refuse_further(rel.related_model, seen) or _protects(rel.related_model):  # type: ignore[arg-type]
                return True
            continue
        return True  # RESTRICT, SET(...) or a handler of the project's own
    return False


def _protects(model: type[models.Model]) -> bool:
    return any(
        rel.field.remote_field.on_delete is PROTECT  # type: ignore[union-attr]
        for rel in candidate_relations_to_delete(model)
    )
