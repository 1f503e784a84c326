"""Every private DRF and Django attribute bulkops relies on, in one place.

bulkops makes DRF's per-row validation fast by doing its bookkeeping once per batch,
and the REST door reads request bodies itself; both need a few names DRF and Django
do not promise to keep. Each is used through this module only, and
``tests/test_compat.py`` checks each one against the installed versions, so an
upgrade that changes one fails there, with a message naming what to review, instead
of somewhere deep in a batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db import models
from django.db.models.deletion import get_candidate_relations_to_delete
from django.http import HttpRequest

# -- DRF serializers ------------------------------------------------------------------------

# Serializer._writable_fields: a property (a generator over every field, per row in DRF)
# that Serializer.to_internal_value iterates; the batch serializer lists them once.
WRITABLE_FIELDS = "_writable_fields"
# Serializer._read_only_defaults(): read-only fields' defaults, merged into the values
# serializer validators see (Serializer.run_validators).
READ_ONLY_DEFAULTS = "_read_only_defaults"


def read_only_defaults(serializer_class: type, serializer: Any) -> dict:
    """DRF's ``Serializer._read_only_defaults`` of ``serializer``."""
    return getattr(serializer_class, READ_ONLY_DEFAULTS)(serializer)


def field_arguments(field: Any) -> tuple[tuple, dict]:
    """The arguments a DRF field was built with (``Field._args``/``_kwargs``, what DRF's
    own ``__deepcopy__`` builds a copy from)."""
    return tuple(field._args), dict(field._kwargs)


# -- Django models ----------------------------------------------------------------------------


def mark_saved(instance: models.Model, db: str) -> None:
    """Tell Django ``instance`` is in database ``db`` (``Model._state``), as ``save()``
    and ``bulk_create`` do, for instances bulkops wrote by other means."""
    instance._state.adding = False
    instance._state.db = db


def update_sql(queryset: Any, changes: dict[str, Any]) -> tuple[str, list[Any]]:
    """The ``UPDATE`` statement (and its parameters) ``queryset.update(**changes)`` runs,
    to be run as part of a larger statement (``sql.UpdateQuery`` and its compiler)."""
    from django.db.models import sql

    query = queryset.query.chain(sql.UpdateQuery)
    query.add_update_values(changes)
    text, params = query.get_compiler(queryset.db).as_sql()
    return text, list(params)


def candidate_relations_to_delete(model: type[models.Model]) -> Iterator[Any]:
    """The reverse one-to-one and many-to-one relations a delete of ``model`` visits
    (``django.db.models.deletion.get_candidate_relations_to_delete``)."""
    return iter(get_candidate_relations_to_delete(model._meta))


def raw_cursor(cursor: Any) -> Any:
    """The database driver's cursor under Django's ``CursorWrapper`` (``.cursor``), for
    what Django has no API for (psycopg's ``COPY``)."""
    return cursor.cursor


# -- DRF / Django requests ----------------------------------------------------------------------


def django_request(request: Any) -> HttpRequest:
    """The ``HttpRequest`` a DRF ``Request`` wraps (``Request._request``)."""
    return request._request


def has_read_body(request: HttpRequest) -> bool:
    """Whether Django read the body already (``HttpRequest._body``)."""
    return hasattr(request, "_body")


def read_body(request: HttpRequest) -> bytes:
    return request._body


def keep_body(request: HttpRequest, body: bytes, *, stream: Any) -> None:
    """Give ``request`` a body read by other means, so ``request.body``, ``request.POST``
    and DRF's parsers keep working: ``HttpRequest._body`` and ``_stream``."""
    request._body = body
    request._stream = stream  # type: ignore[attr-defined]


def mark_read_started(request: HttpRequest) -> None:
    """Tell Django the body stream was read from (``HttpRequest._read_started``)."""
    request._read_started = True  # type: ignore[attr-defined]
