"""Leases: which task works on a chunk (or on a job-wide stage) right now.

A task claims its chunk with one committed ``UPDATE`` that sets ``claimed_by`` and
``heartbeat``; it succeeds only when the chunk is still in the state the task works on
and nobody holds a live lease. Sending a chunk's task (again) frees its lease and
stamps ``heartbeat``, so a task that waits long in the queue is not taken for dead.
While the task works, a thread renews the heartbeat every ``HEARTBEAT_INTERVAL``
seconds through its own database connection. A lease not renewed
for ``STALE_AFTER`` seconds belongs to a dead worker: healing sends the chunk again and
the next task claims it.

The lease only keeps two workers from doing the same work at once. Exactly-once comes
from the state change that ends the work (``UPDATE ... WHERE state = <before>`` in the
transaction that writes the rows): of two tasks racing, one commits and the other finds
no row to change and rolls back.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, connections, router
from django.db.models import F, Q
from django.utils import timezone

from bulkops.conf import bulkops_settings

from .models import BulkChunk, BulkJob

logger = logging.getLogger("bulkops.jobs")


def new_holder() -> str:
    """A name for one task run: host, process and a random part."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def stale_cutoff() -> Any:
    return timezone.now() - timedelta(seconds=bulkops_settings.STALE_AFTER)


def _free() -> Q:
    # Free: never claimed or released (sent recently, or given up), or its holder went quiet.
    return Q(claimed_by="") | Q(heartbeat__isnull=True) | Q(heartbeat__lt=stale_cutoff())


#: What a chunk task does not read of its chunk (loaded if used after all).
UNCLAIMED_FIELDS = frozenset({"keys", "outcome"})


def claim_chunk(
    job_id: Any,
    index: int,
    *,
    state: str,
    holder: str,
    job_status: str | None = None,
    defer: frozenset[str] = frozenset(),
) -> BulkChunk | None:
    """The chunk, leased to ``holder``, if it is in ``state``, nobody else works on it,
    and (``job_status``) its job is in that status; the fields in ``defer`` are read
    only if used.

    On PostgreSQL one ``UPDATE ... RETURNING`` leases and reads it (a task per chunk
    makes this a query per task, worth one round trip less)."""
    now = timezone.now()
    connection = connections[router.db_for_write(BulkChunk)]
    if connection.vendor != "postgresql":
        chunks = BulkChunk.objects.filter(job_id=job_id, index=index, state=state)
        if job_status is not None:
            chunks = chunks.filter(job__status=job_status)
        claimed = chunks.filter(_free()).update(
            claimed_by=holder, heartbeat=now, attempts=F("attempts") + 1
        )
        if not claimed:
            return None
        return BulkChunk.objects.get(job_id=job_id, index=index)
    # The same claim in SQL: the ORM took ~1 ms to compile it, twice per chunk. The
    # condition on claimed_by/heartbeat is _free()'s; the job's status is an EXISTS on
    # the chunk's own row (a join would not be checked again against a concurrent claim).
    meta = BulkChunk._meta
    quote = connection.ops.quote_name
    # In the model's order, as Model.from_db takes them.
    fields = [f for f in meta.concrete_fields if f.name not in UNCLAIMED_FIELDS | defer]
    column = {f.attname: quote(f.column) for f in fields}
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {column['claimed_by']} = %s, "
        f"{column['heartbeat']} = %s, {column['attempts']} = {column['attempts']} + 1 "
        f"WHERE {column['job_id']} = %s AND {column['index']} = %s AND {column['state']} = %s "
        f"AND ({column['claimed_by']} = '' OR {column['heartbeat']} IS NULL "
        f"OR {column['heartbeat']} < %s) "
    )
    params = [holder, now, job_id, index, state, stale_cutoff()]
    if job_status is not None:
        jobs = BulkJob._meta
        sql += (
            f"AND EXISTS (SELECT 1 FROM {quote(jobs.db_table)} WHERE {quote(jobs.pk.column)} = "
            f"{column['job_id']} AND {quote(jobs.get_field('status').column)} = %s) "
        )
        params.append(job_status)
    sql += f"RETURNING {', '.join(column.values())}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchone()
    if found is None:
        return None
    return BulkChunk.from_db(connection.alias, list(column), list(found))


def release_chunk(chunk: BulkChunk, holder: str, **changes: Any) -> None:
    """Give the lease up (with ``changes`` to the chunk), unless another holder has it."""
    BulkChunk.objects.filter(pk=chunk.pk, claimed_by=holder).update(claimed_by="", **changes)


def claim_job(job_id: Any, *, stage: str, holder: str) -> BulkJob | None:
    """The job, leased to ``holder`` for its job-wide task of ``stage``."""
    claimed = (
        BulkJob.objects.filter(pk=job_id, stage=stage, status__in=BulkJob.ACTIVE)
        .filter(Q(lease="") | Q(heartbeat__isnull=True) | Q(heartbeat__lt=stale_cutoff()))
        .update(lease=holder, heartbeat=timezone.now())
    )
    if not claimed:
        return None
    return BulkJob.objects.get(pk=job_id)


def release_job(job: BulkJob, holder: str) -> None:
    BulkJob.objects.filter(pk=job.pk, lease=holder).update(lease="")


class Heartbeat:
    """Renews a lease every ``HEARTBEAT_INTERVAL`` seconds while the ``with`` block runs.

    ``report()`` may return more fields of the job to save with each beat: a writer
    inside one long transaction reports its progress this way, through the thread's own
    connection, so readers see it before the transaction ends. PostgreSQL only: on
    SQLite a second writer would wait for the first one's lock.
    """

    def __init__(
        self,
        *,
        holder: str,
        chunk: BulkChunk | None = None,
        job: BulkJob | None = None,
        report: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.holder = holder
        self.chunk = chunk
        self.job = job
        self.report = report
        self.interval = bulkops_settings.HEARTBEAT_INTERVAL
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0

    def __enter__(self) -> Heartbeat:
        if connections[router.db_for_write(BulkJob)].vendor == "postgresql":
            self._thread = threading.Thread(target=self._run, name="bulkops-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.beat()
                except DatabaseError:
                    # The next beat tries again; a lease that stays quiet is taken over.
                    logger.warning("bulkops heartbeat failed", exc_info=True)
                    connections.close_all()
        finally:
            connections.close_all()  # this thread's own connections

    def beat(self) -> None:
        now = timezone.now()
        if self.chunk is not None:
            renewed = BulkChunk.objects.filter(pk=self.chunk.pk, claimed_by=self.holder).update(
                heartbeat=now
            )
            if renewed:
                # The job's progress is current as of now, even while chunks take long.
                BulkJob.objects.filter(pk=self.chunk.job_id).update(progress_at=now)
        if self.job is not None:
            fields: dict[str, Any] = {"heartbeat": now, "progress_at": now}
            if self.report is not None:
                fields.update(self.report())
            BulkJob.objects.filter(pk=self.job.pk, lease=self.holder).update(**fields)
        self.beats += 1
