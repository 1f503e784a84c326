"""Leases: one task works on a chunk at a time; a quiet lease is a dead worker's."""

import time

import pytest
from django.db import connection
from django.utils import timezone

from bulkops.jobs.lease import Heartbeat, claim_chunk, claim_job, release_chunk
from bulkops.jobs.models import BulkChunk, BulkJob
from tests.jobs.factories import make_job

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_chunk_is_leased_to_one_task_at_a_time():
    job = make_job(chunks=1)
    first = claim_chunk(job.pk, 0, state=BulkChunk.NEW, holder="a")
    assert first is not None and first.claimed_by == "a" and first.attempts == 1
    assert claim_chunk(job.pk, 0, state=BulkChunk.NEW, holder="b") is None
    release_chunk(first, "a")
    again = claim_chunk(job.pk, 0, state=BulkChunk.NEW, holder="b")
    assert again is not None and again.claimed_by == "b" and again.attempts == 2


def test_a_lease_gone_quiet_is_taken_over(settings):
    settings.BULKOPS = {"STALE_AFTER": 5}
    job = make_job(chunks=1)
    assert claim_chunk(job.pk, 0, state=BulkChunk.NEW, holder="dead")
    quiet = timezone.now() - timezone.timedelta(seconds=6)
    BulkChunk.objects.filter(job=job).update(heartbeat=quiet)
    taken = claim_chunk(job.pk, 0, state=BulkChunk.NEW, holder="alive")
    assert taken is not None and taken.claimed_by == "alive"


def test_only_a_chunk_in_the_expected_state_is_claimed():
    job = make_job(chunks=1, chunk_state=BulkChunk.DONE)
    assert claim_chunk(job.pk, 0, state=BulkChunk.VALIDATED, holder="a") is None


def test_a_job_wide_stage_is_leased_once():
    job = make_job(status=BulkJob.VALIDATING, stage=BulkJob.STAGE_READ)
    assert claim_job(job.pk, stage=BulkJob.STAGE_READ, holder="a") is not None
    assert claim_job(job.pk, stage=BulkJob.STAGE_READ, holder="b") is None
    assert claim_job(job.pk, stage=BulkJob.STAGE_CHECK, holder="b") is None


@pytest.mark.skipif(connection.vendor != "postgresql", reason="heartbeats run on PostgreSQL")
def test_the_heartbeat_renews_the_lease_and_reports_progress(settings):
    settings.BULKOPS = {"HEARTBEAT_INTERVAL": 0.1}
    job = make_job(chunks=1, status=BulkJob.RUNNING, stage=BulkJob.STAGE_WRITE)
    chunk = claim_chunk(job.pk, 0, state=BulkChunk.NEW, holder="h")
    claimed_at = chunk.heartbeat
    claim_job(job.pk, stage=BulkJob.STAGE_WRITE, holder="h")
    with (
        Heartbeat(holder="h", chunk=chunk) as beat,
        Heartbeat(holder="h", job=job, report=lambda: {"rows_written": 7}),
    ):
        time.sleep(0.5)
    assert beat.beats >= 2
    chunk.refresh_from_db()
    job.refresh_from_db()
    assert chunk.heartbeat > claimed_at
    assert job.rows_written == 7
