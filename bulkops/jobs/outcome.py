"""How a job ends: its outcome once every chunk is written, a failure with its reason,
the counters summed again from the chunks, and what follows the end (``job_finished``,
the user's next queued job)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import connections, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from bulkops import compat

from .batches import close_connection_if_broken, using
from .models import BulkChunk, BulkJob
from .signals import job_finished

logger = logging.getLogger("bulkops.jobs")


def finish_if_written(job_id: Any) -> bool:
    """Set the job's outcome once every chunk is written or failed (inside the caller's
    transaction, if any). True if this call did."""
    with transaction.atomic(using=using(), savepoint=False):
        job = BulkJob.objects.select_for_update().filter(pk=job_id).first()
        if job is not None and job.status == BulkJob.CANCELLED:
            # Chunks that were in flight at the cancel still count.
            refresh_counts(job)
            job.save(update_fields=COUNTERS)
            return False
        if job is None or job.status != BulkJob.RUNNING:
            return False
        if job.chunks_done + job.chunks_failed < job.chunks_total:
            return False
        refresh_counts(job)
        failed_chunks = list(job.chunks.filter(state=BulkChunk.FAILED).order_by("index"))
        if failed_chunks:
            job.error = failed_chunks_message(failed_chunks)
        job.status = outcome_status(job)
        job.stage = BulkJob.STAGE_DONE
        job.finished_at = timezone.now()
        job.progress_at = job.finished_at
        job.lease = ""
        job.save()
        transaction.on_commit(lambda: ended(job.pk), using=using())
    return True


def add_counts(
    job_id: Any,
    counts: dict[str, int],
    returning: list[str],
    *,
    along: tuple[Any, dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """Add ``counts`` to the job's counters (stamping ``progress_at``) and read the
    ``returning`` fields as they are after the addition; the row stays locked until the
    caller's transaction ends. ``along``: ``(queryset, changes)``, an update (of the
    chunk the counts are for) made with it, and the counts added only if it changed a
    row; ``None`` if it changed none.

    One statement on PostgreSQL (``WITH ... UPDATE ... RETURNING``): a chunk does this
    once per stage, and a round trip less per chunk is worth it."""
    now = timezone.now()
    connection = connections[using()]
    if connection.vendor != "postgresql":
        if along is not None and not along[0].update(**along[1]):
            return None
        BulkJob.objects.filter(pk=job_id).update(
            progress_at=now, **{name: F(name) + value for name, value in counts.items()}
        )
        return BulkJob.objects.filter(pk=job_id).values(*returning).first() or {}
    meta = BulkJob._meta
    quote = connection.ops.quote_name
    column = {name: quote(meta.get_field(name).column) for name in [*counts, *returning]}
    sets = ", ".join(f"{column[name]} = {column[name]} + %s" for name in counts)
    head, condition = "", ""
    params: list[Any] = []
    if along is not None:
        update, params = compat.update_sql(*along)
        head = f"WITH along AS ({update} RETURNING 1) "
        condition = " AND EXISTS (SELECT 1 FROM along)"
    sql = (
        f"{head}UPDATE {quote(meta.db_table)} SET {sets}, "
        f"{quote(meta.get_field('progress_at').column)} = %s "
        f"WHERE {quote(meta.pk.column)} = %s{condition} "
        f"RETURNING {', '.join(column[name] for name in returning)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *counts.values(), now, job_id])
        found = cursor.fetchone()
    if found is None:
        return None if along is not None else {}
    return dict(zip(returning, found, strict=True))


def outcome_status(job: BulkJob) -> str:
    if job.failed == 0:
        return BulkJob.COMPLETED
    if job.succeeded == 0:
        return BulkJob.FAILED
    return BulkJob.PARTIAL


COUNTERS = [
    "created",
    "updated",
    "deleted",
    "errors",
    "rolled_back",
    "rows_written",
    "unprocessed",
    "total_rows",
]


def refresh_counts(job: BulkJob) -> None:
    """The job's counters summed again from its chunks (their truth), on ``job``."""
    done = Q(state=BulkChunk.DONE)
    totals = job.chunks.aggregate(
        created=Sum("created"),
        updated=Sum("updated"),
        deleted=Sum("deleted"),
        errors=Sum("errors"),
        rolled_back=Sum("rolled_back"),
        written=Sum("size", filter=done),
        pending_invalid=Sum("invalid", filter=~done),
        pending_rows=Sum("size", filter=~done),
        rows=Sum("size"),
    )
    for name in ("created", "updated", "deleted", "rolled_back"):
        setattr(job, name, totals[name] or 0)
    job.errors = (totals["errors"] or 0) + (totals["pending_invalid"] or 0)
    job.rows_written = totals["written"] or 0
    job.unprocessed = (totals["pending_rows"] or 0) - (totals["pending_invalid"] or 0)
    if job.total_rows is None:
        job.total_rows = totals["rows"] or 0


def failed_chunks_message(chunks: list[BulkChunk]) -> str:
    parts = [f"chunk {c.index + 1} ({rows_label(c)}): {c.error}" for c in chunks[:5]]
    more = f"; and {len(chunks) - 5} more" if len(chunks) > 5 else ""
    return (
        f"{len(chunks)} chunk{'s' if len(chunks) != 1 else ''} failed and can be retried: "
        + "; ".join(parts)
        + more
        + "."
    )


def rows_label(chunk: BulkChunk) -> str:
    if chunk.first_row is not None:
        return f"rows {chunk.first_row}-{chunk.first_row + chunk.size - 1}"
    return f"items {chunk.start}-{chunk.start + chunk.size - 1}"


def fail_job(job_id: Any, message: str) -> None:
    """End the job ``failed`` with one sentence saying why (an unreadable source, say)."""
    with transaction.atomic(using=using()):
        job = BulkJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_finished:
            return
        refresh_counts(job)
        job.status = BulkJob.FAILED
        job.error = message
        job.finished_at = timezone.now()
        job.progress_at = job.finished_at
        job.lease = ""
        job.save()
        transaction.on_commit(lambda: ended(job_id), using=using())


def fail_chunk(chunk: BulkChunk, holder: str, *, stage: str, reason: str) -> None:
    """The chunk failed for good (until retried): a failed validation fails the job;
    a failed write leaves the other chunks going on."""
    close_connection_if_broken()
    with transaction.atomic(using=using()):
        before = BulkChunk.NEW if stage == BulkJob.STAGE_VALIDATE else BulkChunk.VALIDATED
        changed = BulkChunk.objects.filter(pk=chunk.pk, state=before).update(
            state=BulkChunk.FAILED, failed_stage=stage, error=reason, claimed_by=""
        )
        if not changed:
            return
        if stage == BulkJob.STAGE_WRITE:
            BulkJob.objects.filter(pk=chunk.job_id).update(chunks_failed=F("chunks_failed") + 1)
    logger.warning("bulkops job %s: chunk %s failed: %s", chunk.job_id, chunk.index, reason)
    if stage == BulkJob.STAGE_VALIDATE:
        fail_job(
            chunk.job_id,
            f"Chunk {chunk.index + 1} ({rows_label(chunk)}) could not be validated: {reason} "
            "Retry the failed chunks to go on.",
        )
    else:
        finish_if_written(chunk.job_id)


def ended(job_id: Any) -> None:
    """After a job ended: tell ``job_finished`` receivers once, and start the user's next job."""
    job = BulkJob.objects.filter(pk=job_id).first()
    if job is None:
        return
    if BulkJob.objects.filter(pk=job_id, notified=False).update(notified=True):
        try:
            job_finished.send(sender=BulkJob, job=job)
        except Exception:
            logger.exception("bulkops job %s: a job_finished receiver failed", job_id)
    start_next(job.user_id)


def start_next(user_id: Any) -> None:
    from .limits import start_queued_jobs

    start_queued_jobs(user_id)
