"""What a valid row writes: its validated data as model attribute values, and its action.

DRF's validated data names fields (``category``: a ``Category``); a write needs the
model's attributes (``category_id``: its key). How one set of validated keys maps to
attributes is worked out once per set of keys (a *shape*) and reused for every row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import models

from .displays import dict_display
from .options import CREATE, UPDATE
from .staged import StagedRow

_MISSING = object()


class Attributes:
    """Turns validated rows of one model into attribute values to write."""

    def __init__(self, model: type[models.Model], unique_attnames: Iterable[str]) -> None:
        # Validated data name -> (attribute name, attribute of the related object or None).
        self.attributes: dict[str, tuple[str, str | None]] = {}
        for f in model._meta.concrete_fields:
            if f.is_relation:
                self.attributes[f.name] = (f.attname, f.target_field.attname)  # type: ignore[union-attr]
            self.attributes.setdefault(f.attname, (f.attname, None))
        self.unique_attnames = set(unique_attnames)
        self._shapes: dict[tuple, Any] = {}  # validated keys -> how they map to attributes

    def shape_of(self, keys: tuple[str, ...]) -> Any:
        shape = self._shapes.get(keys, _MISSING)
        if shape is _MISSING:
            shape = self._shapes[keys] = self._shape(keys)
        return shape

    def stage_new(self, row: StagedRow, shape: Any, validated: tuple) -> None:
        """``stage_values`` of a new row whose validated values come in ``shape``'s
        order (``shape`` not ``None``)."""
        row.values, row.related = _shaped(shape, validated)
        row.action = CREATE

    def stage_values(
        self, row: StagedRow, validated: Any, before: dict[int, dict[str, Any]]
    ) -> None:
        """What a valid row writes: model attribute values, and the action."""
        shape = self.shape_of(tuple(validated))
        related: dict[str, Any] | None = None
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
            values, related = _shaped(shape, tuple(validated.values()))
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
        """How validated data with these keys becomes attribute values: a display of the
        attribute names in order (``displays``), and the related fields ``(name,
        attname, target attribute)``; ``None`` when two keys name one attribute."""
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
        return dict_display((attname, n) for n, attname in enumerate(attnames)), relations


def _shaped(shape: Any, validated: Sequence[Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Attribute values of validated values given in ``shape``'s order (``shape`` not
    ``None``), and the related objects they name (``None`` when there are none)."""
    attributes_of, relations = shape
    values = attributes_of(validated)
    related = None
    for name, attname, target in relations:
        value = values[attname]
        if value is not None:
            if related is None:
                related = {}
            related[name] = value
            values[attname] = getattr(value, target)
    return values, related
