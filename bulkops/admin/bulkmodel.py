"""Which serializer and natural key serve a model: the engine's registry.

A thin adapter, so the admin asks one function whatever the registry's state:
``bulkops.registry`` (the engine's, like ``admin.site``) when it is there, else
the ModelSerializer found in ``<app>.serializers`` as ``bulk_import`` finds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models
from rest_framework import serializers


@dataclass(frozen=True)
class BulkModelInfo:
    """What the admin needs of a bulk-enabled model (the registry's ``BulkModel``)."""

    model: type[models.Model]
    serializer_class: type[serializers.ModelSerializer]
    natural_key: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.model._meta.label_lower

    @property
    def name(self) -> str:
        return self.model._meta.label


def bulk_model_for(model: type[models.Model]) -> Any:
    """The registry's entry for ``model`` (``.model``, ``.serializer_class``,
    ``.natural_key``, ``.label``); raises the registry's ``NotRegistered`` (or
    ``BulkOpsError`` without a registry) naming the fix."""
    try:
        from bulkops.registry import registry  # type: ignore[import-not-found]
    except ImportError:
        registry = None
    if registry is not None:
        return registry.get(model)
    from bulkops.management.commands.bulk_import import serializer_for

    serializer_class = serializer_for(model)
    meta = getattr(serializer_class, "Meta", None)
    return BulkModelInfo(
        model=model,
        serializer_class=serializer_class,
        natural_key=tuple(getattr(meta, "natural_key", ()) or ()),
    )
