"""Healing: unfinished work whose worker is gone is sent again; nothing else is."""

import pytest
from django.utils import timezone

from bulkops.jobs.heal import heal
from bulkops.jobs.lease import claim_chunk
from bulkops.jobs.models import BulkChunk, BulkJob
from bulkops.jobs.queue import get_queue, task_id
from tests.jobs.factories import make_job

pytestmark = pytest.mark.django_db(transaction=True)


def test_chunks_whose_worker_went_quiet_are_sent_again_once(rq_queue):
    job = make_job(chunks=3, status=BulkJob.VALIDATING, stage=BulkJob.STAGE_VALIDATE)
    # chunk 1 has a live lease, chunk 2 is validated already.
    BulkChunk.objects.filter(job=job, index=1).update(claimed_by="w", heartbeat=timezone.now())
    BulkChunk.objects.filter(job=job, index=2).update(state=BulkChunk.VALIDATED)

    report = heal()

    assert report["tasks"] == 1
    assert get_queue().job_ids == [task_id(job.pk, "validate", 0)]
    assert heal()["tasks"] == 0  # waiting in the queue: not sent twice
    assert get_queue().job_ids == [task_id(job.pk, "validate", 0)]


def test_a_job_wide_task_whose_lease_went_quiet_is_sent_again(rq_queue):
    stale = timezone.now() - timezone.timedelta(hours=1)
    job = make_job(status=BulkJob.VALIDATING, stage=BulkJob.STAGE_READ, lease="w", heartbeat=stale)
    live = make_job(
        status=BulkJob.VALIDATING, stage=BulkJob.STAGE_READ, lease="v", heartbeat=timezone.now()
    )
    heal()
    assert get_queue().job_ids == [task_id(job.pk, "read")]
    assert BulkJob.objects.get(pk=job.pk).lease == ""
    assert BulkJob.objects.get(pk=live.pk).lease == "v"


def test_finished_and_waiting_jobs_are_left_alone(rq_queue):
    make_job(chunks=2, status=BulkJob.CANCELLED, stage=BulkJob.STAGE_VALIDATE)
    make_job(chunks=2, status=BulkJob.VALIDATED, stage=BulkJob.STAGE_CONFIRM)
    assert heal()["tasks"] == 0
    assert get_queue().job_ids == []


def test_a_dead_workers_lease_is_freed_when_its_chunk_is_sent_again(rq_queue):
    job = make_job(chunks=1, status=BulkJob.RUNNING, stage=BulkJob.STAGE_WRITE)
    stale = timezone.now() - timezone.timedelta(hours=1)
    BulkChunk.objects.filter(job=job).update(
        state=BulkChunk.VALIDATED, claimed_by="dead:1:x", heartbeat=stale
    )
    heal()
    chunk = job.chunks.get()
    assert chunk.claimed_by == "" and chunk.heartbeat > stale
    assert claim_chunk(job.pk, 0, state=BulkChunk.VALIDATED, holder="next") is not None
