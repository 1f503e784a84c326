"""``POST /api/batch/``: many API requests in one, side by side where they allow it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..compat import django_request
from ..conf import bulkops_settings
from ..envelope import read_body
from ..exceptions import BulkOpsError
from ..idempotency import idempotent_response
from .calls import Caller
from .envelope import parse_batch_envelope
from .execution import BatchRunner, batch_concurrency
from .openapi import BatchAutoSchema
from .targets import UrlPolicy


class BatchView(APIView):
    """Run several API requests in one: `{"requests": [...], "atomic": false}`.

    Each request runs through its own view with the caller's credentials, so its
    permissions, throttles, idempotency and validation are those of a direct call.
    `depends_on` orders requests; `{id.body.path}` in a url or body string takes a value
    from an earlier response. With `atomic: true` the batch is one transaction.

    Override ``api_prefix`` when the API lives elsewhere than ``/api/``. The batch itself
    needs an authenticated user and is not throttled: its requests are, one by one, by
    their own views.
    """

    permission_classes = [IsAuthenticated]
    throttle_classes: list[Any] = []
    parser_classes = [JSONParser]
    schema = BatchAutoSchema()
    api_prefix = "/api/"

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        view = super().as_view(**initkwargs)
        # Under ATOMIC_REQUESTS each request of the batch gets its own transaction, as a
        # direct call would; "atomic": true makes the whole batch one.
        view._non_atomic_requests = set(settings.DATABASES)
        return view

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if self.get_content_negotiator().select_parser(request, self.get_parsers()) is None:
            raise UnsupportedMediaType(request.content_type)
        policy = self.get_url_policy()
        body = read_body(django_request(request), limit=bulkops_settings.MAX_BYTES)
        envelope = parse_batch_envelope(
            body, policy=policy, max_requests=bulkops_settings.MAX_BATCH_REQUESTS
        )
        concurrency = batch_concurrency(bulkops_settings.BATCH_CONCURRENCY)

        def run() -> Response:
            runner = BatchRunner(
                envelope=envelope, caller=Caller(request), policy=policy, concurrency=concurrency
            )
            return Response({"responses": [response.as_dict() for response in runner.run()]})

        return idempotent_response(request, body=envelope.body, run=run)

    def get_url_policy(self) -> UrlPolicy:
        """Which urls this batch may call: under ``api_prefix``, never a batch view."""
        return UrlPolicy(
            api_prefix=self.api_prefix,
            batch_path=self.request.path_info,
            batch_class=BatchView,
            urlconf=getattr(django_request(self.request), "urlconf", None),
        )

    def handle_exception(self, exc: Exception) -> Response:
        status = getattr(exc, "status_code", None)
        if isinstance(exc, BulkOpsError) and status is not None:
            return Response(exc.as_dict(), status=status)
        return super().handle_exception(exc)
