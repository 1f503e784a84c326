"""DRF viewset mixins for bulk create, update, upsert and delete (CONTRACT §3).

Each mixin adds one action to the ``<resource>/bulk/`` route, the way DRF's
``mixins.py`` adds ``create`` or ``destroy``, and a ``perform_bulk_*`` hook that runs
the engine::

    POST   /api/products/bulk/   BulkCreateMixin.bulk_create    -> perform_bulk_create
    PATCH  /api/products/bulk/   BulkUpdateMixin.bulk_update    -> perform_bulk_update
    PUT    /api/products/bulk/   BulkUpsertMixin.bulk_upsert    -> perform_bulk_upsert
    DELETE /api/products/bulk/   BulkDestroyMixin.bulk_destroy  -> perform_bulk_destroy

A router adds the route with the methods of the mixins a viewset has. Every action
uses the viewset's own serializer, serializer context and queryset: ``get_queryset()``
bounds which objects an update or delete can reach.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, MethodNotAllowed
from rest_framework.metadata import SimpleMetadata
from rest_framework.parsers import JSONParser
from rest_framework.permissions import DjangoModelPermissions
from rest_framework.request import clone_request
from rest_framework.response import Response

from .engine import SourceRow, run_batch
from .envelope import BulkOptions, Envelope, InvalidEnvelope
from .exceptions import BulkOpsError
from .idempotency import ItemKeys, idempotent_response
from .jobs.bulkasync import AsyncBulkMixin
from .openapi import BulkAutoSchema
from .results import BatchResult
from .throttling import BulkItemThrottle

# action (viewset method) -> engine mode
BULK_ACTIONS = {
    "bulk_create": "create",
    "bulk_update": "update",
    "bulk_upsert": "upsert",
    "bulk_destroy": "delete",
}
_ROUTE = {
    "post": "bulk_create",
    "patch": "bulk_update",
    "put": "bulk_upsert",
    "delete": "bulk_destroy",
}


class BulkModelPermissions(DjangoModelPermissions):
    """``DjangoModelPermissions``, except that the bulk upsert (PUT), which creates as
    well as changes, needs both the add and the change permission."""

    bulk_perms_map = {
        **DjangoModelPermissions.perms_map,
        "PUT": ["%(app_label)s.add_%(model_name)s", "%(app_label)s.change_%(model_name)s"],
    }

    def has_permission(self, request: Any, view: Any) -> bool:
        if getattr(view, "action", None) in BULK_ACTIONS:
            self.perms_map = self.bulk_perms_map
        return super().has_permission(request, view)


class BulkMetadata(SimpleMetadata):
    """``OPTIONS <resource>/bulk/``: the item fields for POST and PUT, as the user may send
    them. DRF's ``SimpleMetadata`` would look up the one object of a PUT, which a
    collection route has not."""

    def determine_actions(self, request: Any, view: Any) -> dict:
        actions = {}
        action = view.action
        for method in {"PUT", "POST"} & set(view.allowed_methods):
            view.request = clone_request(request, method)
            view.action = view.action_map.get(method.lower())
            try:
                view.check_permissions(view.request)
            except (APIException, PermissionDenied, Http404):
                pass
            else:
                actions[method] = self.get_serializer_info(view.get_serializer())
            finally:
                view.request = request
                view.action = action
        return actions


class BulkMixin(AsyncBulkMixin):
    """The ``bulk`` route and what the bulk actions share: the envelope, idempotency,
    the item throttle, the permissions and the error responses.

    ``bulk_default_atomic`` is the transaction mode when a request names none
    (default: ``BULKOPS["DEFAULT_ATOMIC"]``). For the bulk actions a plain
    ``DjangoModelPermissions`` in ``permission_classes`` is applied as
    ``BulkModelPermissions``, and ``bulk_throttle_classes`` are added to the throttles.
    """

    bulk_default_atomic: str | None = None
    bulk_throttle_classes: list[type] = [BulkItemThrottle]
    schema = BulkAutoSchema()

    @action(
        detail=False,
        methods=[],
        url_path="bulk",
        url_name="bulk",
        parser_classes=[JSONParser],
        metadata_class=BulkMetadata,
    )
    def bulk(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        """Bulk operations; each HTTP method is routed to its own action."""
        raise MethodNotAllowed(request.method)

    # The router keeps the methods whose action the viewset has (see ``_ROUTE``).
    bulk.mapping.update(_ROUTE)

    def get_bulk_mode(self) -> str | None:
        """The engine mode of the current action, ``None`` outside the bulk actions."""
        return BULK_ACTIONS.get(getattr(self, "action", None) or "")

    def get_permissions(self) -> list:
        permissions = super().get_permissions()  # type: ignore[misc]
        if self.get_bulk_mode() is None:
            return permissions
        return [
            BulkModelPermissions() if type(p) is DjangoModelPermissions else p for p in permissions
        ]

    def get_throttles(self) -> list:
        throttles = super().get_throttles()  # type: ignore[misc]
        if self.get_bulk_mode() is not None:
            throttles += [throttle() for throttle in self.bulk_throttle_classes]
        return throttles

    def handle_exception(self, exc: Exception) -> Response:
        status = getattr(exc, "status_code", None)
        if isinstance(exc, BulkOpsError) and status is not None:
            return Response(exc.as_dict(), status=status)
        return super().handle_exception(exc)  # type: ignore[misc]

    def get_bulk_envelope(self) -> Envelope:
        """The request's envelope, read and checked once (the item throttle needs it too)."""
        envelope = getattr(self, "_bulk_envelope", None)
        if envelope is None:
            envelope = self.read_bulk_envelope()  # sync or async limits (bulkops.jobs)
            self._bulk_envelope = envelope
        return envelope

    def get_bulk_item_count(self) -> int:
        return len(self.get_bulk_envelope().rows)

    def run_bulk(
        self, *, mode: str, items: list[SourceRow], options: BulkOptions, **engine_options: Any
    ) -> BatchResult:
        """Run the engine on ``items`` with this viewset's serializer, context and queryset.

        ``engine_options`` go to ``run_batch``: pass ``after_write=`` to act on the written
        objects inside the transaction (bulk writes send no ``post_save``).
        """
        return run_batch(
            serializer_class=self.get_serializer_class(),  # type: ignore[attr-defined]
            rows=items,
            mode=mode,
            atomic=options.atomic,
            chunk_size=options.chunk_size,
            dry_run=options.dry_run,
            context=self.get_serializer_context(),  # type: ignore[attr-defined]
            queryset=self.get_queryset(),  # type: ignore[attr-defined]
            **engine_options,
        )

    def bulk_response(self, perform: Any) -> Response:
        """Run ``perform(items=, options=)`` on the envelope; 200 with one result per item.

        Items whose ``_idempotency_key`` was applied before are not performed again: they
        are reported ``replayed``. A repeated ``Idempotency-Key`` replays the response.
        """
        envelope = self.get_bulk_envelope()
        if self.bulk_runs_async():
            return self.bulk_async_response(envelope)  # 202 and a job (bulkops.jobs)
        request = self.request  # type: ignore[attr-defined]

        def run() -> Response:
            keys = ItemKeys.claim(
                user=request.user,
                model=self.get_queryset().model,  # type: ignore[attr-defined]
                keys=envelope.item_keys,
                refs={index: envelope.rows[index].ref for index in envelope.item_keys},
                dry_run=envelope.options.dry_run,
            )
            rows, positions = [], []
            for index, row in enumerate(envelope.rows):
                if index in keys.replayed:
                    continue
                for name, messages in keys.errors.get(index, {}).items():
                    row.errors = row.errors or {}
                    row.errors.setdefault(name, []).extend(messages)
                rows.append(row)
                positions.append(index)
            try:
                result = perform(items=rows, options=envelope.options)
            except BaseException:
                keys.release()
                raise
            return Response(keys.settle(result, positions).as_dict())

        return idempotent_response(request, body=envelope.body, run=run)


class BulkCreateMixin(BulkMixin):
    """``POST <resource>/bulk/``: create every item (needs the add permission)."""

    def bulk_create(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        """Create every item; one result per item."""
        return self.bulk_response(self.perform_bulk_create)

    def perform_bulk_create(self, *, items: list[SourceRow], options: BulkOptions) -> BatchResult:
        """Override to change how the items are created, or to act on the result."""
        return self.run_bulk(mode="create", items=items, options=options)


class BulkUpdateMixin(BulkMixin):
    """``PATCH <resource>/bulk/``: partial update; each item names its object by ``id``
    or its natural key (needs the change permission)."""

    def bulk_update(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        """Partially update the object each item names by `id` or natural key."""
        return self.bulk_response(self.perform_bulk_update)

    def perform_bulk_update(self, *, items: list[SourceRow], options: BulkOptions) -> BatchResult:
        """Override to change how the items are updated, or to act on the result."""
        return self.run_bulk(mode="update", items=items, options=options)


class BulkUpsertMixin(BulkMixin):
    """``PUT <resource>/bulk/``: create or update by the serializer's ``Meta.natural_key``
    (needs the add and the change permission)."""

    def bulk_upsert(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        """Create or update each item by its natural key."""
        serializer_class = self.get_serializer_class()  # type: ignore[attr-defined]
        if not getattr(getattr(serializer_class, "Meta", None), "natural_key", None):
            resource = serializer_class.Meta.model._meta.verbose_name_plural
            raise InvalidEnvelope(
                f"Upsert (PUT) needs a natural key, and {resource} have none; create with "
                "POST, or update by id with PATCH."
            )
        return self.bulk_response(self.perform_bulk_upsert)

    def perform_bulk_upsert(self, *, items: list[SourceRow], options: BulkOptions) -> BatchResult:
        """Override to change how the items are upserted, or to act on the result."""
        return self.run_bulk(mode="upsert", items=items, options=options)


class BulkDestroyMixin(BulkMixin):
    """``DELETE <resource>/bulk/``: delete the object each item names by ``id`` or natural
    key (needs the delete permission)."""

    def bulk_destroy(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        """Delete the object each item names by `id` or natural key."""
        return self.bulk_response(self.perform_bulk_destroy)

    def perform_bulk_destroy(self, *, items: list[SourceRow], options: BulkOptions) -> BatchResult:
        """Override to change how the items are deleted, or to act on the result."""
        return self.run_bulk(mode="delete", items=items, options=options)


class BulkModelViewSet(
    BulkCreateMixin, BulkUpdateMixin, BulkUpsertMixin, BulkDestroyMixin, viewsets.ModelViewSet
):
    """A ``ModelViewSet`` with the four bulk actions on ``<resource>/bulk/``."""
