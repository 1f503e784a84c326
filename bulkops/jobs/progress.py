"""A job's progress as CONTRACT §3 shows it, from the counters the stages keep.

The counters move when a chunk commits (read, validated, written). An ``atomic=all``
job writes every chunk in one transaction, so its writer also reports the rows written
so far through a second database connection (``bulkops.jobs.lease.Heartbeat``): readers
see progress while the transaction is still open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils import timezone

if TYPE_CHECKING:
    from .models import BulkJob


def stage_counts(job: BulkJob) -> tuple[int, int | None, int, int]:
    """``(processed, total, succeeded, failed)`` of the job's current stage."""
    total = job.total_rows
    stage = job.stage
    if stage in (job.STAGE_QUEUED, job.STAGE_READ):
        return job.rows_read, total, 0, 0
    if stage == job.STAGE_VALIDATE:
        return job.rows_validated, total, job.rows_validated - job.invalid_rows, job.invalid_rows
    if stage in (job.STAGE_CHECK, job.STAGE_CONFIRM):
        validated = job.rows_validated
        return validated, total, validated - job.invalid_rows, job.invalid_rows
    processed = job.rows_written
    if stage == job.STAGE_DONE:
        processed = (total or 0) - job.unprocessed
    return processed, total, job.succeeded, job.errors + job.rolled_back


def job_progress(job: BulkJob) -> dict[str, Any]:
    processed, total, succeeded, failed = stage_counts(job)
    percent = None
    eta = None
    if total:
        percent = round(min(processed / total, 1.0) * 100, 1)
    elif total == 0:
        percent = 100.0
    if job.is_finished:
        eta = 0
    elif total and processed and job.stage_started_at is not None:
        elapsed = (timezone.now() - job.stage_started_at).total_seconds()
        if elapsed > 0:
            eta = max(0, round((total - processed) / (processed / elapsed)))
    return {
        "total": total,
        "processed": processed,
        "succeeded": succeeded,
        "failed": failed,
        "unprocessed": job.unprocessed,
        "percent": percent,
        "stage": job.stage,
        "eta_seconds": eta,
        "updated_at": job.progress_at,
    }
