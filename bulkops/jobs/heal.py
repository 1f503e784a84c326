"""Healing: giving the work of dead workers to live ones, with no operator.

A task's work is unfinished in the database (a chunk not yet validated or written, a
job-wide stage not moved on) and its lease has gone quiet for ``STALE_AFTER`` seconds
(``lease``): its worker was killed, lost its connection, or its task vanished with a
restarted Redis. If RQ does not hold the task waiting in a queue either, the task is
sent again. Nothing is lost by sending too often: a second delivery finds the work
leased or done.

``heal()`` runs in every ``BulkWorker`` every ``HEAL_INTERVAL`` seconds (one worker at
a time) and on demand through ``services.resume_jobs()`` (``bulk_jobs resume``).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .lease import stale_cutoff
from .limits import start_queued_jobs
from .models import BulkChunk, BulkJob
from .queue import WAITING, Task, dispatch, runs_in_process, task_statuses
from .stages import after_validation, finish_if_written, using, write_tasks

logger = logging.getLogger("bulkops.jobs")

#: The job-wide task of each stage.
JOB_TASKS = {
    BulkJob.STAGE_READ: ("read_source", "read"),
    BulkJob.STAGE_CHECK: ("check_duplicates", "check"),
}


def heal() -> dict[str, Any]:
    """Send again every task whose worker is gone; move on stages whose last step was
    lost; start queued jobs that have a free slot. Returns what it did, for logs."""
    cutoff = stale_cutoff()
    report: dict[str, Any] = {"tasks": 0, "jobs": []}
    for job in BulkJob.objects.filter(status__in=BulkJob.ACTIVE).order_by("created_at"):
        sent = heal_job(job, cutoff)
        if sent:
            report["tasks"] += sent
            report["jobs"].append(str(job.pk))
    for job in (
        BulkJob.objects.filter(status=BulkJob.CANCELLED, finished_at__isnull=False)
        .filter(chunks__claimed_by__gt="")
        .distinct()
    ):
        # Chunks that were in flight at the cancel, whose workers died: count them out.
        job.chunks.filter(claimed_by__gt="", heartbeat__lt=cutoff).update(claimed_by="")
        finish_if_written(job.pk)
    users = BulkJob.objects.filter(status=BulkJob.QUEUED).values_list("user_id", flat=True)
    for user_id in set(users):
        started = start_queued_jobs(user_id)
        report["tasks"] += len(started)
    if report["tasks"]:
        logger.info("bulkops heal: sent %s tasks for jobs %s", report["tasks"], report["jobs"])
    return report


def heal_job(job: BulkJob, cutoff: Any) -> int:
    """Send again the tasks of ``job`` that no live worker has; the number sent."""
    stale = Q(heartbeat__isnull=True) | Q(heartbeat__lt=cutoff)
    tasks: list[Task] = []
    if job.stage in JOB_TASKS or (job.stage == BulkJob.STAGE_WRITE and job.atomic == "all"):
        lease_live = job.lease and job.heartbeat and job.heartbeat >= cutoff
        dispatched_recently = not job.lease and job.heartbeat and job.heartbeat >= cutoff
        if not lease_live and not dispatched_recently:
            if job.stage == BulkJob.STAGE_WRITE:
                tasks = write_tasks(job)
            else:
                name, stage = JOB_TASKS[job.stage]
                tasks = [Task(name, str(job.pk), stage)]
    if job.stage in (BulkJob.STAGE_READ, BulkJob.STAGE_VALIDATE):
        pending = job.chunks.filter(state=BulkChunk.NEW).filter(stale)
        tasks += [
            Task("validate_chunk", str(job.pk), "validate", i)
            for i in pending.values_list("index", flat=True)
        ]
    elif job.stage == BulkJob.STAGE_WRITE and job.atomic != "all":
        pending = job.chunks.filter(state=BulkChunk.VALIDATED).filter(stale)
        tasks += [
            Task("write_chunk", str(job.pk), "write", i)
            for i in pending.values_list("index", flat=True)
        ]
    tasks = [t for t in tasks if t.id not in _waiting(tasks)]
    if tasks:
        with transaction.atomic(using=using()):
            chunks = [t.chunk for t in tasks if t.chunk is not None]
            now = timezone.now()
            if chunks:
                job.chunks.filter(index__in=chunks).update(heartbeat=now, claimed_by="")
            if len(chunks) < len(tasks):
                BulkJob.objects.filter(pk=job.pk, lease=job.lease).update(lease="", heartbeat=now)
            dispatch(tasks, force=True)
    # A step that moves the job on may have been lost with its worker.
    if job.stage == BulkJob.STAGE_VALIDATE:
        after_validation(job.pk)
    elif job.stage == BulkJob.STAGE_WRITE:
        finish_if_written(job.pk)
    return len(tasks)


def _waiting(tasks: list[Task]) -> set[str]:
    """Ids of the tasks RQ holds in a queue, still to run."""
    if not tasks or runs_in_process():
        return set()
    statuses = task_statuses([t.id for t in tasks])
    return {task for task, status in statuses.items() if status in WAITING}
