"""OpenAPI 3 (drf-spectacular) for ``POST /api/batch/``: the envelope, the responses,
the errors and the limits. Documentation only: ``bulkops.batch.envelope`` checks."""

from __future__ import annotations

import functools
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from ..conf import bulkops_settings
from ..envelope import MAX_KEY_LENGTH
from ..openapi import (
    BulkErrorSerializer,
    BulkLimitErrorSerializer,
    DetailErrorSerializer,
    EnumField,
)
from .calls import SELECTED_HEADERS
from .envelope import HEADERS, MAX_HEADER_LENGTH, METHODS
from .targets import MAX_URL_LENGTH


class BatchMethodField(EnumField):
    enum_name = "BatchMethodEnum"
    enum_description = "Upper case, as sent on the wire."


def _named_fields(name: str, names: Any, doc: str, **kwargs: Any) -> type:
    # Header names are not identifiers: the fields are declared through ``type``.
    attrs: dict[str, Any] = {
        header: serializers.CharField(required=False, **kwargs) for header in names
    }
    attrs["__doc__"] = doc
    return type(name, (serializers.Serializer,), attrs)


BatchRequestHeadersSerializer = _named_fields(
    "BatchRequestHeadersSerializer",
    HEADERS.values(),
    "The headers a request may set; credentials and cookies come from the batch request.",
    max_length=MAX_HEADER_LENGTH,
)
BatchResponseHeadersSerializer = _named_fields(
    "BatchResponseHeadersSerializer",
    SELECTED_HEADERS,
    "The response headers that are passed on (when the view set them).",
)


class BatchSubRequestSerializer(serializers.Serializer):
    """One request of the batch."""

    id = serializers.RegexField(
        r"^[A-Za-z0-9_-]{1,64}$",
        max_length=64,
        help_text="Unique in the batch; names the request in `depends_on`, references "
        "and its response.",
    )
    method = BatchMethodField(choices=METHODS)
    url = serializers.CharField(
        max_length=MAX_URL_LENGTH,
        help_text="A path under /api/ (no scheme or host, no `.`/`..` segments, never "
        "/api/batch/), with an optional query. May hold references `{id.body.path}`, "
        "replaced by that value percent-encoded.",
    )
    body = serializers.DictField(
        required=False,
        allow_null=True,
        help_text="The JSON object the view receives (not for GET). A string that is exactly "
        "`{id.body.path}` becomes that value of an earlier response, with its JSON type; "
        "inside longer text the value is inserted as text.",
    )
    headers = BatchRequestHeadersSerializer(required=False)
    depends_on = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Ids of requests that must succeed before this one runs; a request that "
        "fails (status >= 400) makes this one 424, not run. A reference needs its request here "
        "(directly or through another).",
    )


class BatchSubResponseSerializer(serializers.Serializer):
    """The outcome of one request."""

    id = serializers.CharField()
    status = serializers.IntegerField(
        help_text="The view's HTTP status; 424 when not run (a dependency failed, a reference "
        "has no value, an atomic batch stopped); 500 when the view failed."
    )
    body = serializers.JSONField(
        allow_null=True, help_text="The view's JSON body, parsed (null when empty)."
    )
    headers = BatchResponseHeadersSerializer()
    rolled_back = serializers.BooleanField(
        required=False,
        help_text="Atomic batches only: true when any request failed and every write of the "
        "batch was rolled back.",
    )


class BatchResponseSerializer(serializers.Serializer):
    """HTTP 200 whatever the requests did: one response per request, in request order."""

    responses = BatchSubResponseSerializer(many=True)


class BatchRequestNamedSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="0-based position in `requests`.")
    id = serializers.CharField(required=False)


class BatchEnvelopeErrorSerializer(BulkErrorSerializer):
    """400 ``invalid_envelope``: nothing ran."""

    request = BatchRequestNamedSerializer(
        required=False, help_text="The request at fault, when one is."
    )


@functools.cache
def batch_request_serializer(max_requests: int) -> type:
    return type(
        "BatchRequestSerializer",
        (serializers.Serializer,),
        {
            "requests": serializers.ListField(
                child=BatchSubRequestSerializer(),
                min_length=1,
                max_length=max_requests,
                help_text=f"At most {max_requests} (413 batch_too_large beyond).",
            ),
            "atomic": serializers.BooleanField(
                required=False,
                default=False,
                help_text="true: one transaction, in order; any status >= 400 rolls every "
                "write back. false: independent requests run side by side.",
            ),
            "__doc__": "A batch of API requests.",
        },
    )


class BatchAutoSchema(AutoSchema):
    """The batch view's schema: its envelope, responses, errors and limits."""

    def get_operation_id(self) -> str:
        return "batch"

    def get_tags(self) -> list[str]:
        return ["batch"]

    def get_description(self) -> str:  # type: ignore[override]
        return (
            "Run several API requests in one. Each runs through its own endpoint with the "
            "caller's credentials: the same permissions, throttles, idempotency and "
            "validation as a direct call. `depends_on` orders requests (a request whose "
            "dependency failed is 424, not run); `{id.body.path}` in a url or body string "
            "takes a value from an earlier response. `atomic: true` runs the requests in "
            "order in one transaction: any status >= 400 rolls every write back. Otherwise "
            "independent requests run side by side. Responses come in request order.\n\n"
            f"Limits: at most {bulkops_settings.MAX_BATCH_REQUESTS} requests and "
            f"{bulkops_settings.MAX_BYTES} bytes per batch (413 `batch_too_large`); at most "
            f"{bulkops_settings.BATCH_CONCURRENCY} requests run at a time."
        )

    def get_request_serializer(self) -> Any:
        return batch_request_serializer(bulkops_settings.MAX_BATCH_REQUESTS)()

    def get_override_parameters(self) -> list:
        return [
            *super().get_override_parameters(),
            OpenApiParameter(
                "Idempotency-Key",
                location=OpenApiParameter.HEADER,
                description="Replays the whole batch's first response for a retry with the "
                f"same body (within IDEMPOTENCY_TTL); 1 to {MAX_KEY_LENGTH} characters.",
            ),
            OpenApiParameter(
                "Idempotent-Replayed",
                location=OpenApiParameter.HEADER,
                description="`true` when this is the stored response of an earlier request.",
                response=[200],
            ),
        ]

    def get_response_serializers(self) -> Any:
        error = BulkErrorSerializer
        detail = DetailErrorSerializer
        return {
            200: OpenApiResponse(
                BatchResponseSerializer, description="The batch ran: one response per request."
            ),
            400: OpenApiResponse(
                BatchEnvelopeErrorSerializer, description="invalid_envelope: nothing ran."
            ),
            401: OpenApiResponse(detail, description="Not authenticated."),
            403: OpenApiResponse(detail, description="A CSRF failure (session authentication)."),
            409: OpenApiResponse(
                error, description="idempotency_in_flight: the same key is still running."
            ),
            413: OpenApiResponse(
                BulkLimitErrorSerializer,
                description="batch_too_large: too many requests or bytes; nothing ran.",
            ),
            415: OpenApiResponse(detail, description="The body is not JSON."),
            422: OpenApiResponse(
                error, description="idempotency_key_reused: same key, different batch."
            ),
        }
