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

import logging
import uuid
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.signals import got_request_exception
from django.http import Http404
from rest_framework import exceptions, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, MethodNotAllowed
from rest_framework.generics import GenericAPIView
from rest_framework.metadata import SimpleMetadata
from rest_framework.permissions import BasePermission
from rest_framework.request import clone_request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import set_rollback

from .compat import django_request
from .engine import SourceRow, run_batch
from .engine.lookups import guard_related_fields
from .envelope import BulkOptions, Envelope, InvalidEnvelope, check_media_type
from .exceptions import BulkOpsError
from .idempotency import ItemKeys, idempotent_response
from .jobs.bulkasync import AsyncBulkMixin
from .openapi import BulkAutoSchema
from .registry import natural_key_for
from .results import ERROR, BatchResult, RowResult
from .throttling import BulkItemThrottle

logger = logging.getLogger("bulkops.rest")

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
    (default: ``BULKOPS["DEFAULT_ATOMIC"]``); ``bulk_throttle_classes`` are added to the
    throttles of the bulk actions. Permissions are the viewset's own: the upsert (PUT)
    must pass every permission class both as the PUT it is (change) and as a POST
    (add), and every object an update, upsert or delete names must pass
    ``check_object_permissions`` (see ``check_bulk_target``).
    """

    bulk_default_atomic: str | None = None
    bulk_throttle_classes: list[type] = [BulkItemThrottle]
    _bulk_outcomes: list[RowResult] | None = None
    _bulk_item_keys: ItemKeys | None = None
    _bulk_keys_in_transaction = False
    schema = BulkAutoSchema()

    @action(
        detail=False,
        methods=[],
        url_path="bulk",
        url_name="bulk",
        metadata_class=BulkMetadata,
    )
    def bulk(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        """Bulk operations; each HTTP method is routed to its own action."""
        raise MethodNotAllowed(request.method)

    # The router keeps the methods whose action the viewset has (see ``_ROUTE``).
    bulk.mapping.update(_ROUTE)

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        """The viewset's serializer, its related fields refusing NUL characters before they
        query (PostgreSQL cannot be asked): a 400 on the single endpoints, as in bulk."""
        serializer = super().get_serializer(*args, **kwargs)  # type: ignore[misc]
        guard_related_fields(getattr(serializer, "child", serializer))
        return serializer

    def get_bulk_natural_key(self) -> tuple[str, ...]:
        """What names an object in bulk items: the serializer's ``Meta.natural_key``, else
        the natural key the model is registered with (``bulkops.registry``), else none."""
        return natural_key_for(self.get_serializer_class())  # type: ignore[attr-defined]

    def get_bulk_mode(self) -> str | None:
        """The engine mode of the current action, ``None`` outside the bulk actions."""
        return BULK_ACTIONS.get(getattr(self, "action", None) or "")

    def check_permissions(self, request: Any) -> None:
        super().check_permissions(request)  # type: ignore[misc]
        if self.get_bulk_mode() == "upsert":
            # An upsert creates as well as changes: it must also pass as the bulk create
            # it partly is, whatever the permission classes look at (method or action).
            action = self.action  # type: ignore[has-type]
            self.action = "bulk_create"
            try:
                super().check_permissions(clone_request(request, "POST"))  # type: ignore[misc]
            finally:
                self.action = action

    def check_bulk_target(self, obj: Any) -> str | None:
        """Asked for every object a bulk update, upsert or delete names, once the engine
        has fetched them all (one query): ``None`` lets the item go on, a message makes it
        that item's error. By default ``check_object_permissions``, so the bulk actions
        refuse what the single endpoints refuse, with DRF's message."""
        try:
            self.check_object_permissions(self.request, obj)  # type: ignore[attr-defined]
        except APIException as exc:
            return str(exc.detail)
        except PermissionDenied as exc:  # Django's, from a permission class
            return str(exc) or str(exceptions.PermissionDenied.default_detail)
        except Http404:
            return "Not found."
        return None

    def get_bulk_target_check(self) -> Any:
        """``check_bulk_target``, or ``None`` when no permission class looks at objects
        (then the engine need not ask for each one)."""
        overridden = (
            type(self).check_bulk_target is not BulkMixin.check_bulk_target
            or type(self).check_object_permissions  # type: ignore[attr-defined]
            is not GenericAPIView.check_object_permissions
        )
        if overridden or any(
            type(p).has_object_permission is not BasePermission.has_object_permission
            for p in self.get_permissions()  # type: ignore[attr-defined]
        ):
            return self.check_bulk_target
        return None

    def get_throttles(self) -> list:
        throttles = super().get_throttles()  # type: ignore[misc]
        if self.get_bulk_mode() is not None:
            throttles += [throttle() for throttle in self.bulk_throttle_classes]
        return throttles

    def handle_exception(self, exc: Exception) -> Response:
        status = getattr(exc, "status_code", None)
        if isinstance(exc, BulkOpsError) and status is not None:
            return Response(exc.as_dict(), status=status)
        if self.get_bulk_mode() is not None and not isinstance(
            exc, APIException | Http404 | PermissionDenied
        ):
            return self.bulk_server_error(exc)
        return super().handle_exception(exc)  # type: ignore[misc]

    def bulk_server_error(self, exc: Exception) -> Response:
        """An unexpected error in a bulk action: a JSON 500, never Django's HTML page. It is
        logged with its traceback and sent as ``got_request_exception`` (error reporters
        listen there), and an ``ATOMIC_REQUESTS`` transaction is rolled back."""
        reference = uuid.uuid4().hex[:12]
        request = self.request  # type: ignore[attr-defined]
        logger.error(
            "Bulk request %s %s failed (reference %s)",
            request.method,
            request.path,
            reference,
            exc_info=exc,
        )
        got_request_exception.send(sender=type(self), request=django_request(request))
        set_rollback()
        written = getattr(self, "_bulk_outcomes", None)
        message = "The server failed while processing this request"
        if written is not None and not written:
            message += "; no item was written, so it is safe to send again"
        return Response(
            {
                "error": "server_error",
                "message": f"{message}. Reference: {reference}.",
                "reference": reference,
            },
            status=500,
        )

    def get_bulk_envelope(self) -> Envelope:
        """The request's envelope, read and checked once (the item throttle needs it too)."""
        envelope = getattr(self, "_bulk_envelope", None)
        if envelope is None:
            check_media_type(self.request)  # type: ignore[attr-defined]
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
        objects inside the transaction (bulk writes send no ``post_save``). Every row's
        outcome is also kept as the engine decides it, so that if the engine fails after
        some chunks committed the response still tells every item's fate.
        """
        outcomes = self._bulk_outcomes = []
        on_row = engine_options.pop("on_row", None)

        def keep(row: RowResult) -> None:
            outcomes.append(row)
            if on_row is not None:
                on_row(row)

        keys = self._bulk_item_keys
        if keys is not None and keys.claimed:
            # Item keys' outcomes commit with their items (ItemKeys.record).
            theirs = engine_options.pop("in_transaction", None)

            def in_transaction(results: list[RowResult]) -> None:
                keys.record(results)
                if theirs is not None:
                    theirs(results)

            engine_options["in_transaction"] = in_transaction
            self._bulk_keys_in_transaction = True

        engine_options.setdefault("check_target", self.get_bulk_target_check())
        engine_options.setdefault("natural_key", self.get_bulk_natural_key())
        return run_batch(
            serializer_class=self.get_serializer_class(),  # type: ignore[attr-defined]
            rows=items,
            mode=mode,
            atomic=options.atomic,
            chunk_size=options.chunk_size,
            dry_run=options.dry_run,
            context=self.get_serializer_context(),  # type: ignore[attr-defined]
            queryset=self.get_queryset(),  # type: ignore[attr-defined]
            on_row=keep,
            **engine_options,
        )

    def bulk_failure_result(
        self, exc: Exception, *, items: list[SourceRow], outcomes: list[RowResult]
    ) -> BatchResult:
        """The engine failed after reporting ``outcomes`` (chunks whose fate was final):
        those as they are, and every other item an error saying it was not written."""
        reference = uuid.uuid4().hex[:12]
        request = self.request  # type: ignore[attr-defined]
        logger.error(
            "Bulk request %s %s failed after %d of %d items were decided (reference %s)",
            request.method,
            request.path,
            len(outcomes),
            len(items),
            reference,
            exc_info=exc,
        )
        options = self.get_bulk_envelope().options
        result = BatchResult(
            mode=self.get_bulk_mode() or "create", atomic=options.atomic, dry_run=options.dry_run
        )
        decided = set()
        for row in outcomes:
            decided.add(row.index)
            result.add(row)
        message = (
            f"Not written: the server failed while writing this batch ({type(exc).__name__}, "
            f"reference {reference}); send this item again."
        )
        for index, item in enumerate(items):
            if index not in decided:
                result.add(
                    RowResult(
                        index,
                        ERROR,
                        item.row,
                        item.ref,
                        errors={api_settings.NON_FIELD_ERRORS_KEY: [message]},
                    )
                )
        return result

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
                mode=self.get_bulk_mode() or "",
                keys=envelope.item_keys,
                items={index: envelope.rows[index].values for index in envelope.item_keys},
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
            keys.positions = positions
            self._bulk_item_keys = keys
            self._bulk_keys_in_transaction = False
            self._bulk_outcomes = None
            try:
                result = perform(items=rows, options=envelope.options)
            except Exception as exc:
                outcomes = self._bulk_outcomes
                if not outcomes:  # no item's fate is final: a 500, and a retry is safe
                    keys.release()
                    raise
                result = self.bulk_failure_result(exc, items=rows, outcomes=outcomes)
            except BaseException:
                keys.release()
                raise
            result = keys.finish(result, recorded_by_engine=self._bulk_keys_in_transaction)
            return Response(result.as_dict())

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
    """``PUT <resource>/bulk/``: create or update by the natural key
    (``get_bulk_natural_key``; needs the add and the change permission)."""

    def bulk_upsert(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        """Create or update each item by its natural key."""
        if not self.get_bulk_natural_key():
            serializer_class = self.get_serializer_class()  # type: ignore[attr-defined]
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
