"""The engine and the database as one job uses them: its ``Batch``, its serializer and
context, the database alias of the job tables, and what to do after a database error."""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from typing import Any

from django.db import InterfaceError, OperationalError, connections, router
from django.utils.module_loading import import_string

from .models import BulkJob

#: Database errors worth trying again: a lost connection, a deadlock, a serialization failure.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


BACKOFF = 0.5


MAX_BACKOFF = 30.0


def using() -> str:
    return router.db_for_write(BulkJob)


def serializer_class_for(job: BulkJob) -> type:
    if job.serializer:
        return import_string(job.serializer)
    return bulk_model_for(job).serializer_class


def bulk_model_for(job: BulkJob) -> Any:
    from bulkops.registry import registry

    return registry.get(job.model)


def batch_for(job: BulkJob) -> Any:
    """The engine's ``Batch`` with the job's options."""
    from bulkops.engine import Batch

    natural_key = None if job.serializer else (bulk_model_for(job).natural_key or None)
    return Batch(
        serializer_class=serializer_class_for(job),
        mode=job.mode,
        natural_key=natural_key,
        atomic=job.atomic,
        chunk_size=job.chunk_size,
        dry_run=job.dry_run,
        context=context_for(job),
        with_data=False,
    )


#: A worker runs chunk after chunk of the same jobs: each thread keeps the last few
#: jobs with their Batch (serializer prepared, statements built), rather than read the
#: job and build its Batch for every task (~3 ms). What they hold does not change once
#: the job runs; a task that fails forgets its job (``forget_job``).
RECENT_JOBS = 4
_recent = threading.local()


def job_and_batch(job_id: Any) -> tuple[BulkJob, Any]:
    """The job (as it was when first read here) and its ``Batch``."""
    recent: OrderedDict[str, tuple[BulkJob, Any]] | None = getattr(_recent, "jobs", None)
    if recent is None:
        recent = _recent.jobs = OrderedDict()
    key = str(job_id)
    found = recent.get(key)
    if found is not None:
        recent.move_to_end(key)
        return found
    job = BulkJob.objects.get(pk=job_id)
    found = recent[key] = (job, batch_for(job))
    while len(recent) > RECENT_JOBS:
        recent.popitem(last=False)
    return found


def forget_job(job_id: Any) -> None:
    recent = getattr(_recent, "jobs", None)
    if recent is not None:
        recent.pop(str(job_id), None)


def context_for(job: BulkJob) -> dict[str, Any]:
    """The serializer context of a job's rows: what ``bulk_import`` gives, plus the job's."""
    context = dict(job.options.get("context") or {})
    context.update({"request": None, "user": job.user, "bulk_job": job})
    return context


def is_file_job(job: BulkJob) -> bool:
    return bool(job.file_name)


def backoff(attempt: int) -> float:
    delay = min(BACKOFF * 2 ** max(attempt - 1, 0), MAX_BACKOFF)
    return delay * random.uniform(0.8, 1.2)


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__


def close_connection() -> None:
    """Drop this thread's connection after a database error; the next query reconnects."""
    connection = connections[using()]
    try:
        connection.close()
    except Exception:  # already broken; Django forgets it anyway
        connection.connection = None


def close_connection_if_broken() -> None:
    connections[using()].close_if_unusable_or_obsolete()
