"""The job API (CONTRACT §3 "Jobs"): ``/api/bulk-jobs/``.

::

    GET  /api/bulk-jobs/                       own jobs (superusers: all), newest first, paginated
    GET  /api/bulk-jobs/<id>/                  one job: status, options, progress, links
    GET  /api/bulk-jobs/<id>/results/?status=  per-row results, paginated, in row order
    GET  /api/bulk-jobs/<id>/errors.csv|.xlsx  the failed rows as uploaded plus ``errors``
    POST /api/bulk-jobs/<id>/cancel/           stop after the chunks in flight
    POST /api/bulk-jobs/<id>/retry/            run the failed chunks again

Any authenticated user may use it for the jobs they started; another user's job is 404
(a superuser sees every job). The views only parse and render: the work is
``bulkops.jobs.services``'.
"""

from __future__ import annotations

import tempfile
from itertools import islice
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import FileResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from bulkops.exceptions import BulkOpsError
from bulkops.openapi import DetailErrorSerializer
from bulkops.results import CREATED, UPDATED, RowResult

from . import services
from .errorfiles import stream_csv, write_error_file
from .models import BulkJob
from .results import RESULT_STATUSES, iter_results, result_counts
from .serializers import (
    BulkJobErrorSerializer,
    BulkJobResultPageSerializer,
    BulkJobSerializer,
)
from .stages import serializer_class_for

RESULTS_PAGE_SIZE = 100
MAX_RESULTS_PAGE_SIZE = 1000
ERROR_FILE_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class InvalidQuery(BulkOpsError):
    default_code = "invalid_query"
    status_code = 400


def _int_param(request: Any, name: str, default: int, *, low: int, high: int | None) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        upper = f" to {high}" if high is not None else " or more"
        raise InvalidQuery(f"'{name}' must be a whole number from {low}{upper}; got {raw!r}.")
    return value


def _status_param(request: Any) -> str | None:
    status = request.query_params.get("status") or None
    if status is not None and status not in RESULT_STATUSES:
        raise InvalidQuery(
            f"Unknown status {status!r}; use one of {', '.join(RESULT_STATUSES)}.",
            code="invalid_status",
        )
    return status


def render_data(job: BulkJob, results: list[RowResult], request: Any) -> None:
    """Give created and updated rows ``data``: the object as the single endpoint renders
    it now (one query for the page, with the serializer the job wrote with)."""
    wanted = [r for r in results if r.status in (CREATED, UPDATED) and r.id is not None]
    if not wanted:
        return
    try:
        serializer_class: Any = serializer_class_for(job)
    except (ImportError, ImproperlyConfigured, LookupError):
        return  # the serializer is gone from the code: ids only
    model = serializer_class.Meta.model
    pk = model._meta.pk
    ids = {r.index: pk.to_python(r.id) for r in wanted}
    related = [f.name for f in model._meta.concrete_fields if f.many_to_one]
    objects = model._default_manager.select_related(*related).in_bulk(set(ids.values()))
    context = {"request": request, "format": None, "view": None}
    for result in wanted:
        obj = objects.get(ids[result.index])
        if obj is not None:  # deleted since: its id is all there is
            result.data = serializer_class(obj, context=context).data


class BulkJobPagination(PageNumberPagination):
    """The job list: DRF's page-number pagination, ``page_size`` up to 100."""

    page_size_query_param = "page_size"
    max_page_size = 100


def _error(exc: BulkOpsError, status: int) -> Response:
    return Response(exc.as_dict(), status=status)


class BulkJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Background bulk jobs (API batches, admin imports, `bulk_import --async`): your own;
    a superuser sees everyone's."""

    serializer_class = BulkJobSerializer
    permission_classes = [IsAuthenticated]
    pagination_class = BulkJobPagination
    queryset = BulkJob.objects.none()  # the schema's model; get_queryset() is the real one
    lookup_value_regex = "[^/.]+"

    def get_queryset(self) -> Any:
        jobs = services.visible_jobs(self.request.user)
        if self.action != "list":
            return jobs
        params = self.request.query_params
        for name in ("status", "model", "source"):
            value = params.get(name)
            if value:
                jobs = jobs.filter(**{name: value.lower() if name == "model" else value})
        return jobs.order_by("-created_at", "-pk")

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, services.JobStateError):
            return _error(exc, 409)
        status = getattr(exc, "status_code", None)
        if isinstance(exc, BulkOpsError) and status is not None:
            return _error(exc, status)
        return super().handle_exception(exc)

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=[s for s, _ in BulkJob.STATUSES]),
            OpenApiParameter("model", str, description='A model label, e.g. "catalog.product".'),
            OpenApiParameter("source", str, enum=[s for s, _ in BulkJob.SOURCES]),
        ]
    )
    def list(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        """Your jobs, newest first (a superuser's: everyone's)."""
        return super().list(request, *args, **kwargs)

    @extend_schema(
        responses={
            200: BulkJobSerializer,
            404: OpenApiResponse(DetailErrorSerializer, description="No such job of yours."),
        }
    )
    def retrieve(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        """One job: its status, options, progress and the links to its results."""
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=[*RESULT_STATUSES]),
            OpenApiParameter("page", int, description="1-based page number."),
            OpenApiParameter(
                "page_size", int, description=f"Rows per page, 1 to {MAX_RESULTS_PAGE_SIZE}."
            ),
        ],
        responses={
            200: BulkJobResultPageSerializer,
            400: OpenApiResponse(BulkJobErrorSerializer, description="A bad `status` or size."),
            404: OpenApiResponse(DetailErrorSerializer, description="No such job, or a bad page."),
        },
    )
    @action(detail=True, methods=["get"])
    def results(self, request: Any, pk: Any = None) -> Response:
        """Every row's result in row order, in the bulk endpoints' item shape (`row` for
        file jobs). `status` keeps one kind; `unprocessed` rows were never attempted.
        While the job runs, rows not yet written are left out, except errors."""
        job = self.get_object()
        status = _status_param(request)
        size = _int_param(
            request, "page_size", RESULTS_PAGE_SIZE, low=1, high=MAX_RESULTS_PAGE_SIZE
        )
        page = _int_param(request, "page", 1, low=1, high=None)
        counts = result_counts(job)
        count = counts[status] if status else sum(counts.values())
        last = max((count + size - 1) // size, 1)
        if page > last:
            raise NotFound("Invalid page.")
        rows = list(islice(iter_results(job, status=status, start=(page - 1) * size), size))
        render_data(job, rows, request)
        url = request.build_absolute_uri()
        following = replace_query_param(url, "page", page + 1) if page < last else None
        previous = None
        if page > 1:
            previous = (
                remove_query_param(url, "page")
                if page == 2
                else replace_query_param(url, "page", page - 1)
            )
        return Response(
            {
                "count": count,
                "next": following,
                "previous": previous,
                "results": [row.as_dict() for row in rows],
            }
        )

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "fmt", str, OpenApiParameter.PATH, enum=["csv", "xlsx"], description="File type."
            )
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY),
            (200, ERROR_FILE_TYPES["xlsx"]): OpenApiResponse(OpenApiTypes.BINARY),
            404: OpenApiResponse(DetailErrorSerializer, description="No such job."),
        },
    )
    def errors(self, request: Any, pk: Any = None, fmt: str = "csv") -> Any:
        # Routed by bulkops.jobs.urls (``errors.csv``, with no trailing slash), not @action.
        """The failed rows as uploaded, with their row number and an `errors` column;
        cells a spreadsheet would run as a formula are neutralised with a leading `'`."""
        job = self.get_object()
        filename = f"bulk-job-{job.pk}-errors.{fmt}"
        if fmt == "csv":
            response = StreamingHttpResponse(stream_csv(job), content_type=ERROR_FILE_TYPES[fmt])
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
            return response
        # A workbook is written whole before it can be read: into a temporary file
        # (openpyxl's write-only mode keeps the rows on disk, not in memory).
        spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
        write_error_file(job, spool, format=fmt)
        spool.seek(0)
        return FileResponse(
            spool, as_attachment=True, filename=filename, content_type=ERROR_FILE_TYPES[fmt]
        )

    @extend_schema(
        request=None,
        responses={
            200: BulkJobSerializer,
            404: OpenApiResponse(DetailErrorSerializer, description="No such job."),
            409: OpenApiResponse(BulkJobErrorSerializer, description="The job already ended."),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Any, pk: Any = None) -> Response:
        """Stop the job after the chunks in flight; rows never attempted become
        `unprocessed`. Cancelling a cancelled job changes nothing."""
        job = services.cancel_job(job=self.get_object(), user=request.user)
        return Response(self.get_serializer(job).data)

    @extend_schema(
        request=None,
        responses={
            200: BulkJobSerializer,
            404: OpenApiResponse(DetailErrorSerializer, description="No such job."),
            409: OpenApiResponse(BulkJobErrorSerializer, description="No failed chunks."),
        },
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Any, pk: Any = None) -> Response:
        """Run the job's failed chunks again; it waits `queued` for a slot like a new job."""
        job = services.retry_failed_chunks(job=self.get_object(), user=request.user)
        return Response(self.get_serializer(job).data)
