"""What a job keeps in the database: the job, its chunks and its failed rows.

PostgreSQL, not RQ, is the record of what happened: RQ delivers a task at least once,
and every stage decides from these rows whether its work is still to do. A chunk's
writes and its ``done`` mark commit in one transaction, so a chunk is applied once
however often its task runs.

Per-row outcomes scale to millions of rows: a failed row is a ``BulkRowError``; a
written chunk keeps one status letter per row and the ids of its rows
(``BulkChunk.outcome``), from which ``bulkops.jobs.results`` rebuilds every row's result.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class BulkJob(models.Model):
    """One import or bulk request run in the background, from any door (API, admin, command).

    ``status`` is what CONTRACT §3 shows; ``stage`` says which step the job is in.
    The counters are kept by the stages as their chunks commit; ``progress`` reads them.
    """

    QUEUED = "queued"
    VALIDATING = "validating"
    VALIDATED = "validated"
    RUNNING = "running"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STATUSES = [
        (QUEUED, "queued"),
        (VALIDATING, "validating"),
        (VALIDATED, "validated"),
        (RUNNING, "running"),
        (COMPLETED, "completed"),
        (PARTIAL, "partial"),
        (FAILED, "failed"),
        (CANCELLED, "cancelled"),
    ]
    FINISHED = frozenset({COMPLETED, PARTIAL, FAILED, CANCELLED})
    #: The statuses that hold one of the user's MAX_RUNNING_JOBS_PER_USER slots.
    ACTIVE = frozenset({VALIDATING, RUNNING})

    # Stages, in order. ``confirm``: validated, waiting for ``confirm_job``.
    STAGE_QUEUED = "queued"
    STAGE_READ = "read"
    STAGE_VALIDATE = "validate"
    STAGE_CHECK = "check"
    STAGE_CONFIRM = "confirm"
    STAGE_WRITE = "write"
    STAGE_DONE = "done"
    STAGES = [
        (STAGE_QUEUED, "waiting for a worker"),
        (STAGE_READ, "reading the source"),
        (STAGE_VALIDATE, "validating"),
        (STAGE_CHECK, "checking duplicates across chunks"),
        (STAGE_CONFIRM, "waiting for confirmation"),
        (STAGE_WRITE, "writing"),
        (STAGE_DONE, "done"),
    ]

    SOURCE_API = "api"
    SOURCE_ADMIN = "admin"
    SOURCE_COMMAND = "command"
    SOURCES = [(SOURCE_API, "API"), (SOURCE_ADMIN, "admin"), (SOURCE_COMMAND, "command")]

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="bulk_jobs",
    )
    source = models.CharField(max_length=10, choices=SOURCES)
    status = models.CharField(max_length=10, choices=STATUSES, default=QUEUED, db_index=True)
    stage = models.CharField(max_length=10, choices=STAGES, default=STAGE_QUEUED)

    # What to do.
    model = models.CharField(max_length=100, help_text='The model label, e.g. "catalog.product".')
    serializer = models.CharField(
        max_length=255, blank=True, help_text="Dotted path of the serializer; blank: the registry's"
    )
    mode = models.CharField(max_length=10)
    atomic = models.CharField(max_length=5)
    chunk_size = models.PositiveIntegerField()
    dry_run = models.BooleanField(default=False)
    confirm = models.BooleanField(
        default=False, help_text="Wait at 'validated' until confirm_job (the admin preview)."
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)
    column_map = models.JSONField(
        null=True, blank=True, help_text="File header -> field name (null: ignore the column)."
    )
    sheet = models.CharField(max_length=255, blank=True)
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text="What else the stages need: serializer context, the columns.",
    )
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)

    # Where the rows come from: a file in Django storage, or a BulkPayload.
    storage = models.CharField(max_length=100, blank=True, help_text="A STORAGES alias.")
    file_name = models.CharField(max_length=500, blank=True, help_text="The file's name there.")
    filename = models.CharField(max_length=255, blank=True, help_text="Its name when uploaded.")

    # Counters, kept by the stages in the transactions that change the chunks.
    total_rows = models.PositiveIntegerField(null=True, blank=True)
    rows_read = models.PositiveIntegerField(default=0)
    rows_validated = models.PositiveIntegerField(default=0)
    invalid_rows = models.PositiveIntegerField(default=0)
    rows_written = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    rolled_back = models.PositiveIntegerField(default=0)
    unprocessed = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_validated = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    chunks_failed = models.PositiveIntegerField(default=0)

    error = models.TextField(blank=True, help_text="Why the job as a whole failed.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    validated_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    stage_started_at = models.DateTimeField(null=True, blank=True)
    progress_at = models.DateTimeField(
        null=True, blank=True, help_text="When the counters last moved."
    )
    # The lease of the job-wide task of the current stage (read, check, write all).
    lease = models.CharField(max_length=100, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
    notified = models.BooleanField(default=False, help_text="job_finished was sent.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "status"], name="bulkops_job_user_status")]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="bulkops_job_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.mode} job {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def succeeded(self) -> int:
        return self.created + self.updated + self.deleted

    @property
    def failed(self) -> int:
        return self.errors + self.rolled_back + self.unprocessed

    @property
    def progress(self) -> dict[str, Any]:
        """CONTRACT §3's ``progress``: ``total, processed, succeeded, failed, percent, stage,
        eta_seconds``. ``processed`` counts the rows the current stage got through
        (read, validated, then written); ``percent`` and the ETA are of that stage."""
        from .progress import job_progress

        return job_progress(self)


class BulkPayload(models.Model):
    """The items of an API job, kept with the job so that any worker can read them."""

    job = models.OneToOneField(BulkJob, on_delete=models.CASCADE, related_name="payload")
    # JSON text, not a JSONField: items may hold strings PostgreSQL's jsonb refuses (NUL).
    items = models.TextField()

    def __str__(self) -> str:
        return f"payload of {self.job_id}"


class BulkChunk(models.Model):
    """``chunk_size`` consecutive rows of a job, the unit every stage works in.

    ``source`` holds the rows as read (until validated), ``staged`` the engine's staged
    form (until written), ``keys`` the batch keys of its rows for the cross-chunk
    duplicate check. ``claimed_by``/``heartbeat`` are the lease of the task working on
    it: a lease not renewed for ``BULKOPS["STALE_AFTER"]`` seconds belongs to a dead
    worker, and healing gives the chunk to another.
    """

    NEW = "new"
    VALIDATED = "validated"
    DONE = "done"
    FAILED = "failed"
    STATES = [(NEW, "read"), (VALIDATED, "validated"), (DONE, "done"), (FAILED, "failed")]

    job = models.ForeignKey(BulkJob, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    start = models.PositiveIntegerField(help_text="0-based index of the chunk's first row.")
    size = models.PositiveIntegerField()
    first_row = models.PositiveIntegerField(
        null=True, blank=True, help_text="Spreadsheet row number of the first row (file jobs)."
    )
    state = models.CharField(max_length=10, choices=STATES, default=NEW)
    failed_stage = models.CharField(max_length=10, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    claimed_by = models.CharField(max_length=100, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    source = models.TextField(blank=True, help_text="The rows as read, JSON.")
    staged = models.TextField(blank=True, help_text="The engine's StagedChunk, JSON.")
    keys = models.TextField(blank=True, help_text="Batch keys of the chunk's rows, JSON.")
    duplicates = models.TextField(
        blank=True, help_text="Errors of rows whose key other chunks hold too, JSON."
    )
    outcome = models.JSONField(
        null=True,
        blank=True,
        help_text="Once written: a status letter per row, ids, row numbers, refs.",
    )

    invalid = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    rolled_back = models.PositiveIntegerField(default=0)
    validated_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="bulkops_chunk_job_index"),
        ]

    def __str__(self) -> str:
        return f"chunk {self.index} of {self.job_id} ({self.state})"

    @property
    def counts(self) -> dict[str, int]:
        return {
            "rows": self.size,
            "invalid": self.invalid,
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "errors": self.errors,
            "rolled_back": self.rolled_back,
        }


class BulkRowError(models.Model):
    """One row of a job that failed: at validation, or refused by the database when written.

    ``row`` is the spreadsheet row number (file jobs), ``index`` the 0-based position in
    the job; ``values`` the row as given, for the errors file; ``errors`` DRF's shape.
    """

    job = models.ForeignKey(BulkJob, on_delete=models.CASCADE, related_name="row_errors")
    index = models.PositiveIntegerField()
    row = models.PositiveIntegerField(null=True, blank=True)
    ref = models.JSONField(null=True, blank=True)
    values = models.JSONField(null=True, blank=True)
    errors = models.JSONField()

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="bulkops_row_error_job_index"),
        ]

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row is not None else f"item {self.index}"
        return f"{where} of {self.job_id}"
