"""How many jobs one user may run and queue (``MAX_RUNNING_JOBS_PER_USER``,
``MAX_QUEUED_JOBS_PER_USER``).

A job holds one of its user's slots while it is ``validating`` or ``running``; a job
waiting for a slot is ``queued`` at whatever stage it reached, and ``start_queued_jobs``
moves the oldest ones on whenever a slot frees up. The user's row is locked while slots
are counted, so two jobs starting at once cannot both take the last slot.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import router, transaction
from django.utils import timezone

from bulkops.conf import bulkops_settings
from bulkops.exceptions import BulkOpsError

from .models import BulkJob

#: Seconds a client is told to wait before queueing again (429 ``Retry-After``).
RETRY_AFTER = 30


class TooManyJobs(BulkOpsError):
    """The user already has ``MAX_QUEUED_JOBS_PER_USER`` jobs waiting."""

    default_code = "too_many_jobs"


def queued_count(user: Any) -> int:
    return BulkJob.objects.filter(user=user, status=BulkJob.QUEUED).count()


def can_queue(user: Any) -> bool:
    """May ``user`` start another job now? (False: ``start_*_job`` raises ``TooManyJobs``.)"""
    limit = bulkops_settings.MAX_QUEUED_JOBS_PER_USER
    if not limit or user is None or not getattr(user, "pk", None):
        return True
    return queued_count(user) < limit


def check_can_queue(user: Any, *, lock: bool = False) -> None:
    """Raise ``TooManyJobs`` when ``user`` has ``MAX_QUEUED_JOBS_PER_USER`` jobs waiting.

    ``lock=True`` (inside the transaction that creates the job) locks the user's row
    first, so two requests racing for the last place cannot both pass.
    """
    if lock and getattr(user, "pk", None) is not None:
        user_model = get_user_model()
        list(user_model._default_manager.select_for_update().filter(pk=user.pk).values("pk"))
    if not can_queue(user):
        limit = bulkops_settings.MAX_QUEUED_JOBS_PER_USER
        raise TooManyJobs(
            f"You already have {limit} jobs waiting to run, the most allowed; "
            "try again when one of them has started.",
            limit=limit,
            retry_after=RETRY_AFTER,
        )


def start_queued_jobs(user_id: Any) -> list[BulkJob]:
    """Move the user's oldest ``queued`` jobs into free slots; returns the jobs started.

    Their next tasks are sent when this transaction commits.
    """
    from .stages import resume_stage

    limit = bulkops_settings.MAX_RUNNING_JOBS_PER_USER
    using = router.db_for_write(BulkJob)
    started = []
    with transaction.atomic(using=using):
        jobs = BulkJob.objects.filter(user_id=user_id)
        free = None
        if user_id is not None and limit:
            user_model = get_user_model()
            list(user_model._default_manager.select_for_update().filter(pk=user_id).values("pk"))
            free = limit - jobs.filter(status__in=BulkJob.ACTIVE).count()
            if free <= 0:
                return []
        waiting = jobs.filter(status=BulkJob.QUEUED).order_by("created_at").select_for_update()
        if free is not None:
            waiting = waiting[:free]
        now = timezone.now()
        for job in waiting:
            job.status = BulkJob.RUNNING if job.stage == BulkJob.STAGE_WRITE else BulkJob.VALIDATING
            if job.stage == BulkJob.STAGE_QUEUED:
                job.stage = BulkJob.STAGE_READ
                job.stage_started_at = now
            job.started_at = job.started_at or now
            job.save(update_fields=["status", "stage", "started_at", "stage_started_at"])
            resume_stage(job)
            started.append(job)
    return started
