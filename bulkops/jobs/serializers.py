"""The job API's shapes (CONTRACT §3 "Jobs"): a job, its progress, the 202 of an
asynchronous bulk request, one row's result. They render; they never validate input
(the job API takes none but query parameters)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from bulkops.conf import ATOMIC_CHOICES
from bulkops.openapi import AtomicField, _enum_field

from .links import errors_url, job_url
from .models import BulkJob
from .results import RESULT_STATUSES

#: The members of ``progress``, in the order CONTRACT §3 lists them.
PROGRESS_FIELDS = ("total", "processed", "succeeded", "failed", "percent", "stage", "eta_seconds")

JobStatusField = _enum_field(
    "BulkJobStatusEnum",
    tuple(status for status, _ in BulkJob.STATUSES),
    "queued: waiting for a worker or a free slot; validating; validated: waiting for a "
    "confirm (admin imports); running: writing; then completed, partial, failed or cancelled.",
)
JobStageField = _enum_field(
    "BulkJobStageEnum",
    tuple(stage for stage, _ in BulkJob.STAGES),
    "; ".join(f"{stage}: {label}" for stage, label in BulkJob.STAGES) + ".",
)
JobSourceField = _enum_field(
    "BulkJobSourceEnum",
    tuple(source for source, _ in BulkJob.SOURCES),
    "Which door started the job: the REST API, the admin import or bulk_import.",
)
RowStatusField = _enum_field(
    "BulkJobRowStatusEnum",
    RESULT_STATUSES,
    "unprocessed: never attempted (the job was cancelled, or its chunk failed).",
)


class BulkJobProgressSerializer(serializers.Serializer):
    """Where the job is: rows of the current stage done, succeeded and failed so far."""

    total = serializers.IntegerField(
        allow_null=True, help_text="Rows in the job; null until the source has been read."
    )
    processed = serializers.IntegerField(help_text="Rows the current stage got through.")
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Rows with an error or rolled back so far.")
    percent = serializers.FloatField(allow_null=True, help_text="Of the current stage.")
    stage = JobStageField(choices=[stage for stage, _ in BulkJob.STAGES])
    eta_seconds = serializers.IntegerField(
        allow_null=True, help_text="Estimated seconds left in the current stage."
    )


class BulkJobSerializer(serializers.ModelSerializer):
    """A job, from any door (API, admin, command), with its progress and links."""

    status = JobStatusField(choices=[s for s, _ in BulkJob.STATUSES])
    model = serializers.CharField(help_text='The model label, e.g. "catalog.product".')
    atomic = AtomicField(choices=ATOMIC_CHOICES)
    source = JobSourceField(choices=[s for s, _ in BulkJob.SOURCES])
    progress = serializers.SerializerMethodField()
    results_url = serializers.SerializerMethodField()
    errors_url = serializers.SerializerMethodField()

    class Meta:
        model = BulkJob
        fields = [
            "id",
            "status",
            "model",
            "mode",
            "atomic",
            "source",
            "dry_run",
            "progress",
            "created_at",
            "started_at",
            "finished_at",
            "results_url",
            "errors_url",
        ]
        read_only_fields = fields

    @extend_schema_field(BulkJobProgressSerializer)
    def get_progress(self, job: BulkJob) -> dict[str, Any]:
        progress = job.progress
        return {name: progress.get(name) for name in PROGRESS_FIELDS}

    def get_results_url(self, job: BulkJob) -> str:
        return job_url(job, "bulkjob-results")

    def get_errors_url(self, job: BulkJob) -> str:
        return errors_url(job)


class BulkJobAcceptedSerializer(serializers.Serializer):
    """202: the batch became a job; follow ``status_url`` (also the ``Location`` header)."""

    job_id = serializers.UUIDField()
    status = JobStatusField(choices=[s for s, _ in BulkJob.STATUSES])
    status_url = serializers.CharField()


class BulkJobResultSerializer(serializers.Serializer):
    """One row's outcome: the bulk endpoints' item shape, plus ``row`` for file jobs."""

    index = serializers.IntegerField(help_text="0-based position among the job's rows.")
    row = serializers.IntegerField(
        required=False, help_text="Spreadsheet row number (header = row 1), file jobs only."
    )
    ref = serializers.CharField(required=False, help_text="The item's `_ref` (API jobs).")
    status = RowStatusField(choices=RESULT_STATUSES)
    id = serializers.CharField(required=False, help_text="The object's primary key.")
    data = serializers.DictField(
        required=False, help_text="The object as the model's single endpoint renders it now."
    )
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="DRF's error shape for this row: field -> messages.",
    )


class BulkJobResultPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = BulkJobResultSerializer(many=True)


class BulkJobErrorSerializer(serializers.Serializer):
    """An action the job's state does not allow (409), or a bad query parameter (400)."""

    error = serializers.CharField(help_text="job_state, invalid_status, ...")
    message = serializers.CharField()
