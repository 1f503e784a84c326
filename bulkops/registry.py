"""Which models are bulk-enabled, with their serializer and natural key.

Like ``django.contrib.admin.site``: each app registers its models once, in its
``bulk.py`` (found when Django starts, see ``BulkOpsConfig.ready``), and every door
— the ``bulk_import`` command, the admin import, jobs — looks them up here::

    # myapp/bulk.py
    from bulkops.registry import register
    from .models import Product
    from .serializers import ProductSerializer

    register(Product, ProductSerializer)                  # natural key: Meta.natural_key
    register(Tag, TagSerializer, natural_key=("slug",))   # or given here

``register`` also decorates a serializer: ``@register(Product)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import models
from rest_framework import serializers

from .engine.options import natural_key_of

S = TypeVar("S", bound=type[serializers.ModelSerializer])


class NotRegistered(ImproperlyConfigured):
    """The model is not bulk-enabled (or there is no such model)."""


class AlreadyRegistered(ImproperlyConfigured):
    """The model was registered before."""


@dataclass(frozen=True)
class BulkModel:
    """A bulk-enabled model: its serializer and its natural key (``()``: by id only)."""

    model: type[models.Model]
    serializer_class: type[serializers.ModelSerializer]
    natural_key: tuple[str, ...]

    @property
    def label(self) -> str:
        """``"catalog.product"``"""
        return self.model._meta.label_lower

    @property
    def name(self) -> str:
        """``"catalog.Product"``, as users type it."""
        return self.model._meta.label


class BulkRegistry:
    """The bulk-enabled models, by ``app_label.model_name``."""

    def __init__(self) -> None:
        self._registry: dict[str, BulkModel] = {}

    def register(
        self,
        model: type[models.Model],
        serializer_class: type[serializers.ModelSerializer],
        *,
        natural_key: Sequence[str] | None = None,
    ) -> BulkModel:
        """Bulk-enable ``model`` with ``serializer_class`` (a ``ModelSerializer`` of that
        model). ``natural_key`` names the object in update, upsert and delete rows;
        default: the serializer's ``Meta.natural_key``, else none (rows name it by id)."""
        if not (isinstance(model, type) and issubclass(model, models.Model)):
            raise ImproperlyConfigured(f"register() takes a model class; got {model!r}.")
        if model._meta.abstract:
            raise ImproperlyConfigured(
                f"{model.__name__} is abstract and has no table; register a concrete model."
            )
        _check_serializer(model, serializer_class)
        key = natural_key_of(serializer_class, natural_key)
        _check_natural_key(model, key)
        label = model._meta.label_lower
        if label in self._registry:
            raise AlreadyRegistered(
                f"{model._meta.label} is registered already (with "
                f"{self._registry[label].serializer_class.__name__}); register each model once."
            )
        entry = BulkModel(model, serializer_class, key)
        self._registry[label] = entry
        return entry

    def unregister(self, model: type[models.Model] | str) -> None:
        del self._registry[self.get(model).label]

    def get(self, model: type[models.Model] | str) -> BulkModel:
        """The entry of a model class or label (``"catalog.product"``, ``"catalog.Product"``);
        ``NotRegistered`` says how to register it, and lists the registered ones."""
        label = model._meta.label_lower if isinstance(model, type) else str(model).lower()
        entry = self._registry.get(label)
        if entry is not None:
            return entry
        enabled = ", ".join(entry.name for entry in self) or "none"
        try:
            model_class = model if isinstance(model, type) else apps.get_model(str(model))
        except (LookupError, ValueError):
            raise NotRegistered(
                f"There is no model {model!r}; bulk-enabled models are: {enabled}."
            ) from None
        app = apps.get_app_config(model_class._meta.app_label)
        name = model_class.__name__
        raise NotRegistered(
            f"{model_class._meta.label} is not bulk-enabled. Add `register({name}, "
            f"{name}Serializer)` (from bulkops.registry import register) to the bulk.py module "
            f"of an installed app, e.g. {app.name}.bulk. Bulk-enabled models are: {enabled}."
        )

    def __iter__(self) -> Iterator[BulkModel]:
        return iter(sorted(self._registry.values(), key=lambda entry: entry.label))

    def __len__(self) -> int:
        return len(self._registry)

    def __contains__(self, model: object) -> bool:
        if isinstance(model, type) and issubclass(model, models.Model):
            return model._meta.label_lower in self._registry  # type: ignore[attr-defined]
        return isinstance(model, str) and model.lower() in self._registry


def _check_serializer(model: type[models.Model], serializer_class: Any) -> None:
    if not (
        isinstance(serializer_class, type)
        and issubclass(serializer_class, serializers.ModelSerializer)
    ):
        raise ImproperlyConfigured(
            f"register({model.__name__}, ...) needs a ModelSerializer class; "
            f"got {serializer_class!r}."
        )
    meta_model = getattr(getattr(serializer_class, "Meta", None), "model", None)
    if meta_model is not model:
        shown = meta_model.__name__ if isinstance(meta_model, type) else meta_model
        raise ImproperlyConfigured(
            f"{serializer_class.__name__}.Meta.model is {shown}, not {model.__name__}; "
            f"register {model.__name__} with a serializer of {model.__name__}."
        )


def _check_natural_key(model: type[models.Model], natural_key: tuple[str, ...]) -> None:
    if not natural_key:
        return
    meta = model._meta
    for name in natural_key:
        try:
            field = meta.get_field(name)
        except FieldDoesNotExist:
            raise ImproperlyConfigured(
                f"natural_key {natural_key!r} of {meta.label}: {model.__name__} has no "
                f"field {name!r}."
            ) from None
        if field.is_relation or not field.concrete:
            raise ImproperlyConfigured(
                f"natural_key field {name!r} of {meta.label} is a relation; name the object "
                "by its own unique fields."
            )
    if not _is_unique(model, natural_key):
        raise ImproperlyConfigured(
            f"natural_key {natural_key!r} of {meta.label} is not unique in the database: "
            f"make it unique (unique=True, or a UniqueConstraint on {', '.join(natural_key)}), "
            "or name another key."
        )


def _is_unique(model: type[models.Model], natural_key: tuple[str, ...]) -> bool:
    """Does the database hold each value of ``natural_key`` at most once? (Some unique
    field or set of fields lies within it.)"""
    meta = model._meta
    wanted = set(natural_key)
    if any(meta.get_field(name).unique for name in natural_key):  # type: ignore[union-attr]
        return True
    sets = [*meta.unique_together, *(c.fields for c in meta.total_unique_constraints)]
    return any(set(fields) <= wanted for fields in sets)


registry = BulkRegistry()


def register(
    model: type[models.Model],
    serializer_class: type[serializers.ModelSerializer] | None = None,
    *,
    natural_key: Sequence[str] | None = None,
) -> Any:
    """``registry.register``; without a serializer, a class decorator:
    ``@register(Product)`` above ``class ProductSerializer(ModelSerializer)``."""
    if serializer_class is not None:
        return registry.register(model, serializer_class, natural_key=natural_key)

    def decorate(cls: S) -> S:
        registry.register(model, cls, natural_key=natural_key)
        return cls

    return decorate


__all__ = [
    "AlreadyRegistered",
    "BulkModel",
    "BulkRegistry",
    "NotRegistered",
    "register",
    "registry",
]
