"""Which serializer and natural key serve a model: the engine's registry."""

from __future__ import annotations

from django.db import models

from bulkops.registry import BulkModel, registry


def bulk_model_for(model: type[models.Model]) -> BulkModel:
    """The registry's entry for ``model``; ``NotRegistered`` (with the fix) if none."""
    return registry.get(model)
