"""What a batch may ask for: its mode, transaction scope, chunk size and natural key.

The one place that knows the mode names and where a serializer's natural key comes
from; readers, the engine and every door ask here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..conf import ATOMIC_CHOICES, bulkops_settings
from ..exceptions import InvalidOptions

CREATE, UPDATE, UPSERT, DELETE = "create", "update", "upsert", "delete"
MODES = (CREATE, UPDATE, UPSERT, DELETE)


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise InvalidOptions(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")


def check_options(*, mode: str, atomic: str | None, chunk_size: int | None) -> tuple[str, int]:
    """The effective ``atomic`` and ``chunk_size``, or ``InvalidOptions`` saying what is allowed."""
    check_mode(mode)
    atomic = atomic or bulkops_settings.DEFAULT_ATOMIC
    if atomic not in ATOMIC_CHOICES:
        raise InvalidOptions(f"Unknown atomic {atomic!r}; use one of {', '.join(ATOMIC_CHOICES)}.")
    limit = bulkops_settings.MAX_CHUNK_SIZE
    if chunk_size is None:
        chunk_size = min(bulkops_settings.CHUNK_SIZE, limit)
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int)
        or not 1 <= chunk_size <= limit
    ):
        raise InvalidOptions(
            f"chunk_size must be a whole number from 1 to {limit}; got {chunk_size!r}."
        )
    return atomic, chunk_size


def natural_key_of(serializer: Any, natural_key: Sequence[str] | None = None) -> tuple[str, ...]:
    """``natural_key`` when given, else the serializer's (class or instance)
    ``Meta.natural_key``, else ``()``."""
    if natural_key is None:
        natural_key = getattr(getattr(serializer, "Meta", None), "natural_key", None) or ()
    return tuple(natural_key)
