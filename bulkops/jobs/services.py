"""What the doors (REST, admin, commands) do with jobs: plain functions, keyword-only.

Each function checks what it is asked, changes the job in one transaction and sends the
job's next tasks when that transaction commits. Misuse raises ``BulkOpsError`` (or a
subclass) with a sentence for the user: ``JobStateError`` for an action the job's state
or its owner does not allow, ``TooManyJobs`` beyond ``MAX_QUEUED_JOBS_PER_USER``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import InvalidStorageError, storages
from django.db import IntegrityError, models, router, transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from bulkops.conf import bulkops_settings
from bulkops.exceptions import BulkOpsError, InvalidOptions, LimitExceeded
from bulkops.results import RowResult

from . import stages
from .limits import TooManyJobs, can_queue, check_can_queue, start_queued_jobs
from .models import BulkChunk, BulkJob, BulkPayload, BulkRowError
from .results import RESULT_STATUSES, UNPROCESSED, iter_results, result_counts

__all__ = [
    "RESULT_STATUSES",
    "UNPROCESSED",
    "JobStateError",
    "TooManyJobs",
    "can_queue",
    "cancel_job",
    "confirm_job",
    "job_results",
    "result_counts",
    "resume_jobs",
    "retry_failed_chunks",
    "revalidate_rows",
    "start_file_job",
    "start_payload_job",
    "visible_jobs",
]


class JobStateError(BulkOpsError):
    """The action does not fit the job's state, or the user may not act on the job."""

    default_code = "job_state"


def _using() -> str:
    return router.db_for_write(BulkJob)


def _label(model: Any) -> str:
    if isinstance(model, type) and issubclass(model, models.Model):
        return str(getattr(model, "_meta").label_lower)  # noqa: B009
    return str(model)


def _resolve_model(model: Any) -> Any:
    from bulkops.registry import registry

    return registry.get(model)


def _check_options(mode: str, atomic: str | None, chunk_size: int | None) -> tuple[str, int]:
    from bulkops.engine import check_options

    return check_options(mode=mode, atomic=atomic, chunk_size=chunk_size)


def _storage_alias() -> str:
    alias = bulkops_settings.STORAGE
    try:
        storages[alias]
    except InvalidStorageError:
        from django.conf import settings

        raise ImproperlyConfigured(
            f"BULKOPS['STORAGE'] is {alias!r}, which STORAGES does not define; "
            f"defined: {', '.join(sorted(settings.STORAGES))}."
        ) from None
    return alias


def _start(job: BulkJob) -> None:
    """Start the job when a slot is free (on commit); else it waits ``queued``."""
    user_id = job.user_id
    transaction.on_commit(lambda: start_queued_jobs(user_id), using=_using())


def start_file_job(
    *,
    user: Any,
    model: Any,
    file: Any,
    filename: str | None = None,
    mode: str = "create",
    atomic: str | None = None,
    chunk_size: int | None = None,
    dry_run: bool = False,
    confirm: bool = False,
    column_map: dict[str, str | None] | None = None,
    sheet: str | None = None,
    source: str = BulkJob.SOURCE_ADMIN,
) -> BulkJob:
    """A job importing ``file`` (a Django ``File``/``UploadedFile`` or binary file object),
    kept in ``BULKOPS["STORAGE"]`` so any worker can read it.

    ``confirm=True`` stops the job at ``validated`` until ``confirm_job``. ``column_map``
    maps file headers to field names (``None``: ignore the column); ``None`` matches the
    headers automatically. Raises ``UnreadableFile`` for a file type no reader takes,
    ``LimitExceeded`` over ``MAX_UPLOAD_BYTES``, ``TooManyJobs``, ``InvalidOptions``.
    """
    from django.core.files import File

    from bulkops.engine.readers import resolve_format

    bulk_model = _resolve_model(model)
    atomic, chunk_size = _check_options(mode, atomic, chunk_size)
    if column_map:
        from .sources import check_column_map

        check_column_map(bulk_model.serializer_class(), column_map)
    filename = os.path.basename(filename or getattr(file, "name", None) or "upload")
    resolve_format(filename, None)
    size = getattr(file, "size", None)
    limit = bulkops_settings.MAX_UPLOAD_BYTES
    if size is not None and limit and size > limit:
        raise LimitExceeded(
            f"The file is {size:,} bytes; the most one import may be is {limit:,} bytes.",
            limit=limit,
            received=size,
        )
    check_can_queue(user)
    alias = _storage_alias()
    storage = storages[alias]
    job_id = uuid.uuid4()
    if not isinstance(file, File):
        file = File(file, name=filename)
    if hasattr(file, "seek"):
        file.seek(0)
    name = storage.save(f"bulkops/jobs/{job_id}/{get_valid_filename(filename)}", file)
    try:
        with transaction.atomic(using=_using()):
            check_can_queue(user, lock=True)
            job = BulkJob.objects.create(
                id=job_id,
                user=user if getattr(user, "pk", None) else None,
                source=source,
                model=bulk_model.label,
                mode=mode,
                atomic=atomic,
                chunk_size=chunk_size,
                dry_run=dry_run,
                confirm=confirm,
                column_map=column_map,
                sheet=sheet or "",
                storage=alias,
                file_name=name,
                filename=filename,
            )
            _start(job)
    except BaseException:
        storage.delete(name)
        raise
    return job


def _serializer_path(serializer_class: type) -> str:
    path = f"{serializer_class.__module__}.{serializer_class.__qualname__}"
    from django.utils.module_loading import import_string

    try:
        found = import_string(path)
    except ImportError:
        found = None
    if found is not serializer_class:
        raise InvalidOptions(
            f"A job's serializer must be importable by its dotted path; {path} is not "
            f"(define {serializer_class.__name__} at the top level of its module)."
        )
    return path


def start_payload_job(
    *,
    user: Any,
    model: Any = None,
    items: list[Any],
    mode: str,
    atomic: str | None = None,
    chunk_size: int | None = None,
    dry_run: bool = False,
    serializer_class: type | None = None,
    natural_key: tuple[str, ...] | None = None,
    context: dict[str, Any] | None = None,
    source: str = BulkJob.SOURCE_API,
    idempotency_key: str | None = None,
) -> BulkJob:
    """A job for API ``items``, stored with the job (``BulkPayload``).

    ``serializer_class`` (importable by dotted path) overrides the registry's for
    ``model``; ``context`` is JSON-safe extra serializer context (the job adds ``user``).
    The same ``idempotency_key`` of the same user returns the job it started before.
    Raises ``LimitExceeded`` over ``MAX_ASYNC_ITEMS``, ``TooManyJobs``, ``InvalidOptions``.
    """
    if not isinstance(items, list):
        raise InvalidOptions("items must be a list.")
    limit = bulkops_settings.MAX_ASYNC_ITEMS
    if limit and len(items) > limit:
        raise LimitExceeded(
            f"Maximum {limit} items per asynchronous batch; received {len(items)}",
            limit=limit,
            received=len(items),
        )
    owner = user if getattr(user, "pk", None) else None
    if idempotency_key and owner is not None:
        earlier = BulkJob.objects.filter(user=owner, idempotency_key=idempotency_key).first()
        if earlier is not None:
            return earlier
    serializer = ""
    if serializer_class is not None:
        serializer = _serializer_path(serializer_class)
        label = _label(model or getattr(serializer_class, "Meta").model)  # noqa: B009
    else:
        label = _resolve_model(model).label
    atomic, chunk_size = _check_options(mode, atomic, chunk_size)
    options: dict[str, Any] = {}
    if context:
        try:
            json.dumps(context)
        except (TypeError, ValueError):
            raise InvalidOptions(
                "A job's context must be JSON: strings, numbers, lists, dicts."
            ) from None
        options["context"] = context
    if natural_key is not None:
        options["natural_key"] = list(natural_key)
    check_can_queue(owner)
    try:
        with transaction.atomic(using=_using()):
            check_can_queue(owner, lock=True)
            job = BulkJob.objects.create(
                user=owner,
                source=source,
                model=label,
                serializer=serializer,
                mode=mode,
                atomic=atomic,
                chunk_size=chunk_size,
                dry_run=dry_run,
                options=options,
                idempotency_key=idempotency_key or None,
                total_rows=len(items),
            )
            BulkPayload.objects.create(job=job, items=json.dumps(items, separators=(",", ":")))
            _start(job)
    except IntegrityError:
        earlier = BulkJob.objects.filter(user=owner, idempotency_key=idempotency_key).first()
        if earlier is None:
            raise
        return earlier
    return job


def _check_owner(job: BulkJob, user: Any) -> None:
    if user is None:  # the system itself (a command run without --user)
        return
    if getattr(user, "is_superuser", False) or (job.user_id is not None and job.user_id == user.pk):
        return
    raise JobStateError("This job belongs to another user.", code="not_your_job")


def _locked(job: BulkJob) -> BulkJob:
    return BulkJob.objects.select_for_update().get(pk=job.pk)


def confirm_job(*, job: BulkJob, user: Any) -> BulkJob:
    """Write a job that waits at ``validated``; a confirm repeated later changes nothing."""
    _check_owner(job, user)
    with transaction.atomic(using=_using()):
        job = _locked(job)
        if job.confirmed_at is not None:
            return job
        if job.status != BulkJob.VALIDATED:
            raise JobStateError(
                f"Only a validated job can be confirmed; this one is {job.status}.",
                status=job.status,
            )
        job.confirmed_at = timezone.now()
        job.status = BulkJob.QUEUED
        job.stage = BulkJob.STAGE_WRITE
        job.stage_started_at = job.confirmed_at
        job.save(update_fields=["confirmed_at", "status", "stage", "stage_started_at"])
        _start(job)
    return job


def cancel_job(*, job: BulkJob, user: Any) -> BulkJob:
    """Stop the job: chunks in flight finish, the rows never attempted are ``unprocessed``.
    Cancelling a cancelled job changes nothing; an ended one raises ``JobStateError``."""
    _check_owner(job, user)
    with transaction.atomic(using=_using()):
        job = _locked(job)
        if job.status == BulkJob.CANCELLED:
            return job
        if job.is_finished:
            raise JobStateError(
                f"The job already ended ({job.status}); there is nothing to cancel.",
                status=job.status,
            )
        stages.refresh_counts(job)
        job.status = BulkJob.CANCELLED
        job.finished_at = timezone.now()
        job.progress_at = job.finished_at
        job.save()
        job_id = job.pk
        transaction.on_commit(lambda: stages.ended(job_id), using=_using())
    return job


def retry_failed_chunks(*, job: BulkJob, user: Any) -> BulkJob:
    """Run the chunks that failed again (and a failed ``atomic=all`` write); the job waits
    ``queued`` for a slot like a new one."""
    _check_owner(job, user)
    with transaction.atomic(using=_using()):
        job = _locked(job)
        failed = list(job.chunks.filter(state=BulkChunk.FAILED))
        # A job-wide step that failed (reading, the duplicate check, an atomic=all write)
        # is run again from where it stopped.
        stuck = job.status == BulkJob.FAILED and (
            job.stage in (BulkJob.STAGE_READ, BulkJob.STAGE_CHECK)
            or (
                job.stage == BulkJob.STAGE_WRITE
                and job.atomic == "all"
                and job.chunks.filter(state=BulkChunk.VALIDATED).exists()
            )
        )
        if job.status not in (BulkJob.FAILED, BulkJob.PARTIAL) or not (failed or stuck):
            reason = f" It failed because: {job.error}" if job.error else ""
            raise JobStateError(
                f"This job has no failed chunks to retry (it is {job.status}).{reason}",
                status=job.status,
            )
        write_failed = 0
        revalidating = False
        for chunk in failed:
            revalidate = chunk.failed_stage == BulkJob.STAGE_VALIDATE
            write_failed += not revalidate
            revalidating = revalidating or revalidate
            chunk.state = BulkChunk.NEW if revalidate else BulkChunk.VALIDATED
            chunk.failed_stage = ""
            chunk.attempts = 0
            chunk.error = ""
            chunk.claimed_by = ""
            chunk.save(update_fields=["state", "failed_stage", "attempts", "error", "claimed_by"])
        if revalidating and job.stage not in (BulkJob.STAGE_READ, BulkJob.STAGE_VALIDATE):
            job.stage = BulkJob.STAGE_VALIDATE
        elif write_failed:
            job.stage = BulkJob.STAGE_WRITE
        job.chunks_failed = max(job.chunks_failed - write_failed, 0)
        job.status = BulkJob.QUEUED
        job.error = ""
        job.finished_at = None
        job.notified = False
        job.save()
        _start(job)
    return job


def revalidate_rows(*, job: BulkJob, user: Any, edits: dict[int, dict[str, Any]]) -> dict[int, Any]:
    """Fix rows in place before the confirm: ``edits`` maps a spreadsheet row number (an
    item index for API jobs) to ``{field: new raw value}``. The edited rows are validated
    again by the engine, with duplicates against every other row of the job; their
    staged chunks and ``BulkRowError`` rows are updated. Returns ``{row: errors or None}``.
    """
    _check_owner(job, user)
    from .revalidate import revalidate

    return revalidate(job, edits)


def visible_jobs(user: Any) -> models.QuerySet[BulkJob]:
    """The jobs ``user`` may see: their own; a superuser's, everyone's."""
    jobs = BulkJob.objects.select_related("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return jobs.none()
    if user.is_superuser:
        return jobs.all()
    return jobs.filter(user=user)


def resume_jobs() -> dict[str, Any]:
    """Send again the unfinished work of every job no live worker holds (``bulk_jobs
    resume``); what committed never runs again. Returns ``{"tasks": n, "jobs": [ids]}``."""
    from .heal import heal

    return heal()


def job_results(job: BulkJob, *, status: str | None = None, start: int = 0) -> Iterator[RowResult]:
    """The job's per-row results in row order (see ``bulkops.jobs.results``)."""
    return iter_results(job, status=status, start=start)


def row_error_queryset(job: BulkJob) -> models.QuerySet[BulkRowError]:
    return job.row_errors.order_by("index")
