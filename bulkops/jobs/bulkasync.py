"""The asynchronous path of the bulk endpoints (CONTRACT §3 "Async").

A bulk request runs as a job when it asks to (``Prefer: respond-async``, or
``"async": true`` in the body) or when it has more than ``ASYNC_THRESHOLD`` items; it
may then carry up to ``MAX_ASYNC_ITEMS`` items and ``MAX_ASYNC_BYTES`` bytes. The
answer is 202 with ``Location: /api/bulk-jobs/<id>/`` and
``{"job_id", "status": "queued", "status_url"}``; the job validates and writes the items
with the viewset's serializer, and its results have the synchronous item shape.

Limits. Whether a request is asynchronous is known only once its body is read, so a
view that can run jobs reads a body up to ``MAX_ASYNC_BYTES`` (a bigger body is 413
without being read further); a request that turns out synchronous is then held to
``MAX_BYTES`` and ``MAX_ITEMS`` as before. A view that cannot run jobs reads no further
than ``MAX_BYTES``.

What a job cannot carry. A job runs later, in a worker, without the request: it uses
the viewset's serializer (by its dotted path) with the context ``{"request": None,
"user": <the user>, "bulk_job": <the job>}``, and the model's default manager. So a
viewset runs its bulk requests synchronously when an asynchronous run would differ:
``bulk_async = False``; an overridden ``perform_bulk_<mode>``; or, for update, upsert
and delete, a ``get_queryset()`` narrower than the default manager or object-level
permissions. Such a view answers ``"async": true`` with 400 saying why; ``Prefer:
respond-async`` is a preference and is then not applied; more than ``MAX_ITEMS`` items
are 413. Item ``_idempotency_key``s are for synchronous requests (400 on an asynchronous
one); the ``Idempotency-Key`` header replays the same 202 and the same job.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.utils.module_loading import import_string
from rest_framework.response import Response

from bulkops.compat import django_request
from bulkops.conf import bulkops_settings
from bulkops.envelope import (
    IDEMPOTENCY_KEY,
    BatchTooLarge,
    Envelope,
    InvalidEnvelope,
    parse_envelope,
    read_body,
)
from bulkops.errorfile import flatten_errors
from bulkops.idempotency import HEADER, fingerprint, idempotent_response

from . import services
from .limits import RETRY_AFTER
from .links import job_url
from .models import BulkJob

PREFER_ASYNC = "respond-async"


def prefers_async(request: Any) -> bool:
    """Does the request carry ``Prefer: respond-async`` (RFC 7240)?"""
    prefer = request.headers.get("Prefer", "")
    return any(
        token.split(";", 1)[0].strip().lower() == PREFER_ASYNC for token in prefer.split(",")
    )


def accepted_body(job: BulkJob) -> dict[str, Any]:
    url = job_url(job)
    return {"job_id": str(job.pk), "status": BulkJob.QUEUED, "status_url": url}


def too_many_jobs(exc: services.TooManyJobs) -> Response:
    retry_after = int(exc.extra.get("retry_after") or RETRY_AFTER)
    return Response(exc.as_dict(), status=429, headers={"Retry-After": str(retry_after)})


def job_idempotency_key(key: str, request_fingerprint: str) -> str:
    """The job's key for an ``Idempotency-Key``: the same key and payload find the same
    job even after the stored response expired; another payload never does."""
    return hashlib.sha256(f"{key}\n{request_fingerprint}".encode()).hexdigest()


class AsyncBulkMixin:
    """The asynchronous path of ``BulkMixin`` (mixed into it; see the module docstring).

    ``bulk_async = False`` makes every bulk request of a viewset synchronous.
    """

    bulk_async: bool = True

    def bulk_async_refusal(self) -> str | None:
        """Why this request cannot run as a job (a sentence), or ``None`` when it can."""
        from bulkops.mixins import BULK_ACTIONS, BulkMixin

        view: Any = self
        if not self.bulk_async:
            return "this resource runs bulk requests synchronously only"
        mode = view.get_bulk_mode()
        action = next(a for a, m in BULK_ACTIONS.items() if m == mode)
        hook = f"perform_{action}"
        defined = next((klass for klass in type(view).__mro__ if hook in vars(klass)), BulkMixin)
        if defined.__module__ != BulkMixin.__module__:
            return f"its view overrides {hook}, which a background job does not run"
        serializer_class = view.get_serializer_class()
        path = f"{serializer_class.__module__}.{serializer_class.__qualname__}"
        try:
            importable = import_string(path) is serializer_class
        except ImportError:
            importable = False
        if not importable:
            return f"its serializer {path} cannot be imported by a worker"
        if mode == "create":
            return None
        model = serializer_class.Meta.model
        if view.get_queryset().query.where != model._default_manager.all().query.where:
            return "its view limits which objects may be changed, which a job cannot carry"
        check_target = getattr(view, "get_bulk_target_check", None)
        if check_target is not None and check_target() is not None:
            return "its view checks permissions object by object, which a job cannot carry"
        return None

    def read_bulk_envelope(self) -> Envelope:
        """Read and check the body under the synchronous or the asynchronous limits, and
        decide which way the request runs (``bulk_runs_async``)."""
        view: Any = self
        request = view.request
        refusal = self.bulk_async_refusal()
        settings = bulkops_settings
        sync_bytes, sync_items = settings.MAX_BYTES, settings.MAX_ITEMS
        if refusal is None:
            max_bytes = max(sync_bytes, settings.MAX_ASYNC_BYTES)
            max_items = max(sync_items, settings.MAX_ASYNC_ITEMS)
        else:
            max_bytes, max_items = sync_bytes, sync_items
        body = read_body(django_request(request), limit=max_bytes)
        envelope = parse_envelope(
            body,
            mode=view.get_bulk_mode() or "create",
            default_atomic=view.bulk_default_atomic,
            max_items=max_items,
        )
        count = len(envelope.rows)
        wanted = (
            envelope.async_requested or prefers_async(request) or count > settings.ASYNC_THRESHOLD
        )
        if envelope.async_requested and refusal is not None:
            raise InvalidEnvelope(
                f"This request cannot run asynchronously: {refusal}. Send it without "
                f"'async' (at most {sync_items} items)."
            )
        runs_async = wanted and refusal is None
        if not runs_async:
            if len(body) > sync_bytes:
                raise BatchTooLarge(limit=sync_bytes, received=len(body), unit="bytes")
            if count > sync_items:
                raise BatchTooLarge(limit=sync_items, received=count, unit="items")
        elif count > settings.MAX_ASYNC_ITEMS:
            raise BatchTooLarge(limit=settings.MAX_ASYNC_ITEMS, received=count, unit="items")
        self._bulk_runs_async = runs_async
        return envelope

    def bulk_runs_async(self) -> bool:
        """Does the current bulk request run as a job? (Known once its envelope is read.)"""
        return bool(getattr(self, "_bulk_runs_async", False))

    def bulk_async_response(self, envelope: Envelope) -> Response:
        """Start the job for ``envelope``: 202 with its ``Location``, or 429 when the user
        has ``MAX_QUEUED_JOBS_PER_USER`` jobs waiting. A repeated ``Idempotency-Key``
        replays the 202 of the first request, with the same job."""
        view: Any = self
        request = view.request
        if envelope.item_keys:
            first = min(envelope.item_keys)
            raise InvalidEnvelope(
                f"items[{first}] has an {IDEMPOTENCY_KEY}: item keys are applied by "
                "synchronous requests only; send this batch synchronously, or use the "
                f"{HEADER} header to make the whole request safe to retry."
            )
        for index, row in enumerate(envelope.rows):
            if row.errors:
                raise InvalidEnvelope(
                    f"items[{index}] cannot be queued: {flatten_errors(row.errors)}"
                )
        key = request.headers.get(HEADER)
        job_key = None
        if key and getattr(request.user, "is_authenticated", False):
            job_key = job_idempotency_key(
                key, fingerprint(method=request.method, path=request.path, body=envelope.body)
            )
        options = envelope.options

        def run() -> Response:
            job = services.start_payload_job(
                user=request.user,
                items=envelope.body["items"],
                mode=view.get_bulk_mode(),
                atomic=options.atomic,
                chunk_size=options.chunk_size,
                dry_run=options.dry_run,
                serializer_class=view.get_serializer_class(),
                source=BulkJob.SOURCE_API,
                idempotency_key=job_key,
            )
            return Response(accepted_body(job), status=202)

        try:
            response = idempotent_response(request, body=envelope.body, run=run)
        except services.TooManyJobs as exc:
            return too_many_jobs(exc)
        if response.status_code == 202:
            response["Location"] = response.data["status_url"]
            if prefers_async(request):
                response["Preference-Applied"] = PREFER_ASYNC
        return response
