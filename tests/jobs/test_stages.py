"""Stage steps on their own: what a step does with a chunk or job in a given state."""

import pytest
from django.contrib.auth import get_user_model

from bulkops.jobs import services, stages
from bulkops.jobs.models import BulkChunk, BulkJob
from bulkops.jobs.queue import get_queue, task_id
from tests.jobs.factories import make_job

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_chunk_whose_workers_keep_dying_fails_with_the_reason(settings):
    settings.BULKOPS = {"CHUNK_RETRIES": 3}
    job = make_job(chunks=2, status=BulkJob.VALIDATING, stage=BulkJob.STAGE_VALIDATE)
    BulkChunk.objects.filter(job=job, index=1).update(attempts=4, error="MemoryError")

    stages.validate_chunk(job.pk, 1)

    chunk = job.chunks.get(index=1)
    job.refresh_from_db()
    assert chunk.state == BulkChunk.FAILED and chunk.failed_stage == "validate"
    assert "started 4 times and never finished" in chunk.error and "MemoryError" in chunk.error
    assert job.status == BulkJob.FAILED and "Chunk 2 (items 10-19)" in job.error


def test_a_step_delivered_for_a_done_chunk_does_nothing():
    job = make_job(chunks=1, chunk_state=BulkChunk.DONE, status=BulkJob.RUNNING, stage="write")
    stages.write_chunk(job.pk, 0)
    assert job.chunks.get().attempts == 0  # not even claimed


def test_an_unexpected_error_fails_the_job_instead_of_going_round(rq_queue):
    job = make_job(
        status=BulkJob.VALIDATING, stage=BulkJob.STAGE_CHECK, serializer="nowhere.Serializer"
    )
    with pytest.raises(ImportError):
        stages.check_duplicates(job.pk)
    job.refresh_from_db()
    assert job.status == BulkJob.FAILED
    assert job.error.startswith("The job stopped on an unexpected error: ")
    assert job.lease == ""


def test_retry_runs_a_failed_job_wide_step_again(rq_queue):
    ann = get_user_model().objects.create_user("ann")
    job = make_job(user=ann, status=BulkJob.FAILED, stage=BulkJob.STAGE_CHECK, error="lost it")
    services.retry_failed_chunks(job=job, user=ann)
    job.refresh_from_db()
    assert (job.status, job.error) == (BulkJob.VALIDATING, "")
    assert get_queue().job_ids == [task_id(job.pk, "check")]


def test_chunk_texts_are_compressed_with_lz4_where_postgresql_has_it():
    from django.db import DatabaseError, connection, transaction

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: column compression")
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL default_toast_compression = lz4")
    except DatabaseError:
        pytest.skip("this PostgreSQL was built without lz4")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attrelid::regclass::text, attname, attcompression FROM pg_attribute "
            "WHERE attrelid IN (%s::regclass, %s::regclass) AND attname IN "
            "('source', 'staged', 'keys', 'items')",
            [BulkChunk._meta.db_table, "bulkops_bulkpayload"],
        )
        found = {(table, column): method for table, column, method in cursor.fetchall()}
    assert found == {
        ("bulkops_bulkchunk", "source"): "l",
        ("bulkops_bulkchunk", "staged"): "l",
        ("bulkops_bulkchunk", "keys"): "l",
        ("bulkops_bulkpayload", "items"): "l",
    }


def test_a_dropped_connection_while_preparing_the_chunks_batch_is_retried(settings, monkeypatch):
    from django.db import OperationalError

    from bulkops.jobs import batches, codec

    settings.BULKOPS = {"CHUNK_RETRIES": 3}
    monkeypatch.setattr(batches, "BACKOFF", 0.001)
    real, calls = batches.batch_for, []

    def flaky(job):
        calls.append(job.pk)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(job)

    monkeypatch.setattr(batches, "batch_for", flaky)
    job = make_job(chunks=1, status=BulkJob.VALIDATING, stage=BulkJob.STAGE_VALIDATE)
    rows = [[{"sku": "A1", "name": "a", "price": "1.00"}, None, None, None]]
    BulkChunk.objects.filter(job=job).update(source=codec.dumps(rows), size=1)

    stages.validate_chunk(job.pk, 0)

    chunk = job.chunks.get()
    job.refresh_from_db()
    assert len(calls) == 2
    assert chunk.state == BulkChunk.VALIDATED and chunk.error == ""
    assert job.status != BulkJob.FAILED


def test_a_chunk_validated_after_a_cancel_is_counted_in():
    job = make_job(chunks=2, status=BulkJob.VALIDATING, stage=BulkJob.STAGE_VALIDATE)
    from bulkops.jobs import codec

    rows = [[{"sku": "", "name": "no sku"}, None, None, None]] * 10  # every row invalid
    BulkChunk.objects.filter(job=job, index=0).update(source=codec.dumps(rows))
    original = stages.job_and_batch

    def cancel_meanwhile(job_id):
        found = original(job_id)
        services.cancel_job(job=BulkJob.objects.get(pk=job_id), user=None)
        return found

    stages.job_and_batch = cancel_meanwhile
    try:
        stages.validate_chunk(job.pk, 0)
    finally:
        stages.job_and_batch = original

    job.refresh_from_db()
    assert job.status == BulkJob.CANCELLED
    assert job.chunks.get(index=0).state == BulkChunk.VALIDATED
    # Counted again with the chunk: its 10 invalid rows are errors, the other 10 unprocessed.
    assert (job.errors, job.unprocessed) == (10, 10)
