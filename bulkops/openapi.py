"""OpenAPI 3 (drf-spectacular) for the bulk route: envelopes, per-item results, errors.

``BulkAutoSchema`` is the schema class of the bulk mixins. For the four bulk actions it
describes the request envelope with the resource's own serializer as the item, the
200 response with the per-item result, the whole-request errors and the limits; every
other action is described as drf-spectacular always does. The serializers here are
for documentation only: the envelope is checked by ``bulkops.envelope``.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from django.db import connections, models, router
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent, build_media_type_object
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from .compat import field_arguments
from .conf import ATOMIC_CHOICES, bulkops_settings
from .envelope import IDEMPOTENCY_KEY, MAX_KEY_LENGTH, MAX_REF_LENGTH, REF, is_json_media_type
from .registry import natural_key_for
from .results import STATUSES

BATCH_STATUSES = ("completed", "partial", "failed")
ERROR_CODES = (
    "invalid_envelope",
    "batch_too_large",
    "length_required",
    "idempotency_in_flight",
    "idempotency_key_reused",
    "server_error",
)
_VERBS = {"create": "Create", "update": "Update", "upsert": "Upsert", "delete": "Delete"}


class EnumField(serializers.ChoiceField):
    """A ChoiceField documented as the named enum component ``enum_name``.

    Field names such as ``status`` are shared by unrelated choice sets, which
    spectacular would otherwise have to name by a hash, with a warning.
    """

    enum_name = ""
    enum_description = ""


class _EnumFieldExtension(OpenApiSerializerFieldExtension):
    target_class = EnumField
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: str) -> Any:
        field = self.target
        component = ResolvedComponent(
            name=field.enum_name,
            type=ResolvedComponent.SCHEMA,
            object=field.enum_name,
            schema={
                "type": "string",
                "enum": list(field.choices),
                "description": field.enum_description,
            },
        )
        auto_schema.registry.register_on_missing(component)
        return component.ref


def _enum_field(name: str, choices: tuple[str, ...], description: str) -> type:
    attrs = {"enum_name": name, "enum_description": description}
    return type(f"{name}Field", (EnumField,), attrs)


AtomicField = _enum_field(
    "BulkAtomicEnum",
    ATOMIC_CHOICES,
    "all: one transaction, any error writes nothing; chunk: one transaction per chunk; "
    "none: every valid item is written.",
)
BatchStatusField = _enum_field(
    "BulkStatusEnum",
    BATCH_STATUSES,
    "completed: every item succeeded; partial: some did; failed: none did.",
)
ItemStatusField = _enum_field(
    "BulkItemStatusEnum",
    STATUSES,
    "rolled_back: valid, but its transaction failed; replayed: its _idempotency_key "
    "was applied before, id and data are that outcome.",
)
ErrorCodeField = _enum_field("BulkErrorCodeEnum", ERROR_CODES, "A stable code for programs.")


class BulkSummarySerializer(serializers.Serializer):
    total = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    deleted = serializers.IntegerField()
    rolled_back = serializers.IntegerField()
    replayed = serializers.IntegerField()


class BulkErrorSerializer(serializers.Serializer):
    """An error of the whole request: nothing was written."""

    error = ErrorCodeField(choices=ERROR_CODES)
    message = serializers.CharField(help_text="What is wrong and where, as a sentence.")


class BulkLimitErrorSerializer(BulkErrorSerializer):
    """413 ``batch_too_large``: more items or bytes than allowed."""

    limit = serializers.IntegerField()
    received = serializers.IntegerField()


class BulkServerErrorSerializer(BulkErrorSerializer):
    """500 ``server_error``: an unexpected failure; the reference names it in the logs."""

    reference = serializers.CharField(help_text="Names this failure in the server's logs.")


class DetailErrorSerializer(serializers.Serializer):
    """DRF's error shape (authentication, permission, throttling)."""

    detail = serializers.CharField()


def _resource_name(serializer_class: type) -> str:
    name = serializer_class.__name__
    return name[: -len("Serializer")] if name.endswith("Serializer") else name


def _id_field(model: type[models.Model], **kwargs: Any) -> serializers.Field:
    pk = model._meta.pk
    if isinstance(pk, models.IntegerField):  # the auto fields too
        low, high = connections[router.db_for_read(model)].ops.integer_field_range(
            pk.get_internal_type()
        )
        low = 1 if isinstance(pk, models.AutoField | models.BigAutoField) else low
        return serializers.IntegerField(min_value=low, max_value=high, **kwargs)
    return serializers.CharField(**kwargs)


def _reserved_fields() -> dict[str, serializers.Field]:
    return {
        REF: serializers.CharField(
            required=False,
            label=REF,
            max_length=MAX_REF_LENGTH,
            help_text="Any client string, echoed as `ref` in this item's result.",
        ),
        IDEMPOTENCY_KEY: serializers.CharField(
            required=False,
            label=IDEMPOTENCY_KEY,
            max_length=MAX_KEY_LENGTH,
            help_text="Apply this item at most once per user and resource, across batches; "
            "a repeat reports `replayed`.",
        ),
    }


@functools.cache
def bulk_item_serializer(serializer_class: type, mode: str) -> type:
    """One item of a ``mode`` request for ``serializer_class``: the resource's fields
    (create, upsert), any of them plus ``id`` (update), or ``id``/natural key (delete)."""
    meta: Any = serializer_class.Meta  # type: ignore[attr-defined]
    model = meta.model
    name = f"{_resource_name(serializer_class)}Bulk{_VERBS[mode]}Item"
    natural_key = natural_key_for(serializer_class)
    if mode == "delete":
        fields = serializer_class().get_fields()
        attrs: dict[str, Any] = {
            "id": _id_field(model, required=False, help_text="The object to delete."),
        }
        for key in natural_key:
            # A declared field is rebuilt from its arguments: change those, not the field.
            field = fields[key]
            args, kwargs = field_arguments(field)
            kwargs = {**kwargs, "required": False, "validators": []}
            attrs[key] = type(field)(*args, **kwargs)
        attrs.update(_reserved_fields())
        attrs["__doc__"] = "Names the object to delete by `id` or by its natural key."
        return type(name, (serializers.Serializer,), attrs)
    attrs = dict(_reserved_fields())
    declared = [REF, IDEMPOTENCY_KEY]
    if mode == "update":
        named = "`id`" + "".join(f" or `{key}`" for key in natural_key)
        attrs["id"] = _id_field(model, required=False, help_text=f"The object, named by {named}.")
        declared.insert(0, "id")
    meta_attrs = {}
    fields = getattr(meta, "fields", None)
    if isinstance(fields, list | tuple):  # declared fields must be listed; "__all__" has them
        meta_attrs["fields"] = [*fields, *(f for f in declared if f not in fields)]
    attrs["Meta"] = type("Meta", (meta,), meta_attrs)
    attrs["__doc__"] = f"One item: the same shape as the single endpoint ({mode})."
    return type(name, (serializer_class,), attrs)


@functools.cache
def bulk_request_serializer(
    serializer_class: type, mode: str, max_items: int, max_chunk_size: int
) -> type:
    """The request envelope of a ``mode`` bulk request."""
    item = bulk_item_serializer(serializer_class, mode)
    attrs: dict[str, Any] = {
        "items": serializers.ListField(
            child=item(partial=mode == "update"),
            max_length=max_items,
            help_text=f"At most {max_items} items (413 batch_too_large beyond); more than "
            f"{bulkops_settings.ASYNC_THRESHOLD} run as a job (202), up to "
            f"{bulkops_settings.MAX_ASYNC_ITEMS}.",
        ),
        "atomic": AtomicField(
            choices=ATOMIC_CHOICES, required=False, help_text="Default: the resource's default."
        ),
        "dry_run": serializers.BooleanField(
            required=False, default=False, help_text="Validate and report; write nothing."
        ),
        "chunk_size": serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=max_chunk_size,
            help_text="Items per chunk (the transaction scope of atomic=chunk).",
        ),
        "async": serializers.BooleanField(
            required=False,
            help_text="Run as a background job: 202 with the job's URL (so do "
            "`Prefer: respond-async` and more than ASYNC_THRESHOLD items).",
        ),
        "__doc__": f"A bulk {mode} request.",
    }
    name = f"{_resource_name(serializer_class)}Bulk{_VERBS[mode]}Request"
    return type(name, (serializers.Serializer,), attrs)


@functools.cache
def bulk_response_serializer(serializer_class: type) -> type:
    """The 200 response of every bulk request on ``serializer_class``'s resource."""
    resource = _resource_name(serializer_class)
    model = serializer_class.Meta.model  # type: ignore[attr-defined]
    result = type(
        f"{resource}BulkResult",
        (serializers.Serializer,),
        {
            "index": serializers.IntegerField(help_text="0-based position in `items`."),
            "ref": serializers.CharField(required=False, help_text="The item's `_ref`."),
            "status": ItemStatusField(choices=STATUSES),
            "id": _id_field(model, required=False),
            "data": serializer_class(
                required=False, help_text="The object as the single endpoint returns it."
            ),
            "errors": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField()),
                required=False,
                help_text="DRF's error shape for this item: field -> messages.",
            ),
            "__doc__": "The outcome of one item.",
        },
    )
    return type(
        f"{resource}BulkResponse",
        (serializers.Serializer,),
        {
            "status": BatchStatusField(choices=BATCH_STATUSES),
            "atomic": AtomicField(choices=ATOMIC_CHOICES),
            "dry_run": serializers.BooleanField(),
            "summary": BulkSummarySerializer(),
            "results": result(many=True, help_text="One per item, in request order."),
            "__doc__": "HTTP 200 whatever the items did: one result per item.",
        },
    )


class BulkAutoSchema(AutoSchema):
    """drf-spectacular's schema, with the bulk actions described in full."""

    def _bulk_mode(self) -> str | None:
        get_mode = getattr(self.view, "get_bulk_mode", None)
        return get_mode() if get_mode is not None else None

    def get_operation_id(self) -> str:
        operation_id = super().get_operation_id()
        mode = self._bulk_mode()
        if mode is None:
            return operation_id
        suffix = self.method_mapping[self.method.lower()]
        return operation_id[: -len(suffix)] + mode

    def get_description(self) -> str:  # type: ignore[override]
        description = super().get_description()
        if self._bulk_mode() is None:
            return description
        limits = (
            f"Limits: at most {bulkops_settings.MAX_ITEMS} items and "
            f"{bulkops_settings.MAX_BYTES} bytes per request (413 `batch_too_large`), "
            "also once a gzip body (`Content-Encoding: gzip`) is unpacked; "
            f"`chunk_size` from 1 to {bulkops_settings.MAX_CHUNK_SIZE}. The body must be JSON "
            "(415 otherwise); chunked bodies are read to their end within the same limit. "
            f"Asynchronous requests (202, a job): at most {bulkops_settings.MAX_ASYNC_ITEMS} "
            f"items and {bulkops_settings.MAX_ASYNC_BYTES} bytes."
        )
        return f"{description}\n\n{limits}".strip()

    def get_override_parameters(self) -> list:
        parameters = super().get_override_parameters()
        if self._bulk_mode() is None:
            return parameters
        return [
            *parameters,
            OpenApiParameter(
                "Idempotency-Key",
                location=OpenApiParameter.HEADER,
                description="Replays the first response for a retry with the same payload "
                f"(within IDEMPOTENCY_TTL); 1 to {MAX_KEY_LENGTH} characters.",
            ),
            OpenApiParameter(
                "Content-Encoding",
                location=OpenApiParameter.HEADER,
                enum=["gzip", "identity"],
                description="`gzip`: the body is gzip-compressed; at most MAX_BYTES unpacked.",
            ),
            OpenApiParameter(
                "Idempotent-Replayed",
                location=OpenApiParameter.HEADER,
                description="`true` when this is the stored response of an earlier request.",
                response=[200],
            ),
            OpenApiParameter(
                "Prefer",
                location=OpenApiParameter.HEADER,
                description="`respond-async`: run the batch as a job and answer 202.",
            ),
            OpenApiParameter(
                "Location",
                location=OpenApiParameter.HEADER,
                description="The job's status URL, `/api/bulk-jobs/<id>/`.",
                response=[202],
            ),
            OpenApiParameter(
                "Retry-After",
                type=int,
                location=OpenApiParameter.HEADER,
                description="Seconds to wait before retrying.",
                response=[429],
            ),
        ]

    def _get_request_body(self, direction: Literal["request", "response"] = "request") -> Any:
        mode = self._bulk_mode()
        if mode is None:
            return super()._get_request_body(direction)
        # Described here, not by spectacular's default path, which documents no body
        # for DELETE and would make the PATCH envelope itself partial.
        request = bulk_request_serializer(
            self.view.get_serializer_class(),
            mode,
            max(bulkops_settings.MAX_ITEMS, bulkops_settings.MAX_ASYNC_ITEMS),
            bulkops_settings.MAX_CHUNK_SIZE,
        )
        component = self.resolve_serializer(request(), direction)
        media_types = [
            parser.media_type
            for parser in self.view.get_parsers()
            if is_json_media_type(parser.media_type)
        ] or ["application/json"]
        return {
            "content": {m: build_media_type_object(component.ref) for m in media_types},
            "required": True,
        }

    def get_response_serializers(self) -> Any:
        mode = self._bulk_mode()
        if mode is None:
            return super().get_response_serializers()
        from .jobs.serializers import BulkJobAcceptedSerializer

        error = BulkErrorSerializer
        detail = DetailErrorSerializer
        return {
            200: OpenApiResponse(
                bulk_response_serializer(self.view.get_serializer_class()),
                description="The batch was processed: one result per item, whatever they did.",
            ),
            202: OpenApiResponse(
                BulkJobAcceptedSerializer,
                description="The batch became a job (`Prefer: respond-async`, `async`, or more "
                "than ASYNC_THRESHOLD items); `Location` is its status URL. 429 when "
                "MAX_QUEUED_JOBS_PER_USER jobs already wait.",
            ),
            400: OpenApiResponse(error, description="invalid_envelope: nothing was written."),
            401: OpenApiResponse(
                detail, description="Not authenticated (WWW-Authenticate: Token)."
            ),
            403: OpenApiResponse(detail, description="Lacks the permission (or a CSRF failure)."),
            409: OpenApiResponse(
                error, description="idempotency_in_flight: the same key is still running."
            ),
            411: OpenApiResponse(
                error, description="length_required: a chunked body this server cannot read."
            ),
            413: OpenApiResponse(
                BulkLimitErrorSerializer,
                description="batch_too_large: too many items or bytes (unpacked, for gzip).",
            ),
            415: OpenApiResponse(
                detail,
                description="The body is not JSON of a media type the resource accepts, or "
                "its Content-Encoding is neither gzip nor identity.",
            ),
            422: OpenApiResponse(
                error, description="idempotency_key_reused: same key, different payload."
            ),
            429: OpenApiResponse(
                detail,
                description="Throttled: too many items per minute; or, for an asynchronous "
                "request, too many jobs waiting (`too_many_jobs`).",
            ),
            500: OpenApiResponse(
                BulkServerErrorSerializer,
                description="server_error: the request failed before any item's outcome was "
                "final (nothing was written by the engine). A failure after chunks committed "
                "is a 200 whose unwritten items say so.",
            ),
        }
