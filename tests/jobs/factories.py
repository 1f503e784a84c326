"""BulkJob and BulkChunk rows in a given state, for tests of one mechanism at a time."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from bulkops.jobs.models import BulkChunk, BulkJob


def make_job(*, chunks: int = 0, chunk_state: str = BulkChunk.NEW, **fields: Any) -> BulkJob:
    values: dict[str, Any] = {
        "source": BulkJob.SOURCE_API,
        "model": "catalog.product",
        "mode": "create",
        "atomic": "none",
        "chunk_size": 10,
    }
    values.update(fields)
    job = BulkJob.objects.create(**values)
    for index in range(chunks):
        BulkChunk.objects.create(
            job=job,
            index=index,
            start=index * job.chunk_size,
            size=job.chunk_size,
            state=chunk_state,
            heartbeat=timezone.now() - timezone.timedelta(hours=1),
        )
    if chunks:
        BulkJob.objects.filter(pk=job.pk).update(
            chunks_total=chunks, total_rows=chunks * job.chunk_size
        )
        job.refresh_from_db()
    return job
