"""The services the doors call, on jobs in a given state (the stages are tested apart)."""

import pytest
from django.contrib.auth import get_user_model

from bulkops.jobs import services
from bulkops.jobs.models import BulkChunk, BulkJob, BulkRowError
from bulkops.jobs.queue import get_queue, task_id
from bulkops.jobs.signals import job_finished
from tests.jobs.factories import make_job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ann():
    return get_user_model().objects.create_user("ann")


@pytest.fixture
def bob():
    return get_user_model().objects.create_user("bob")


@pytest.fixture
def finished():
    seen = []

    def receiver(sender, job, **kwargs):
        seen.append((job.pk, job.status))

    job_finished.connect(receiver)
    yield seen
    job_finished.disconnect(receiver)


def validated_job(user, **fields):
    return make_job(
        user=user,
        chunks=2,
        chunk_state=BulkChunk.VALIDATED,
        status=BulkJob.VALIDATED,
        stage=BulkJob.STAGE_CONFIRM,
        confirm=True,
        **fields,
    )


def test_confirm_starts_the_write_and_a_replayed_confirm_changes_nothing(rq_queue, ann):
    job = validated_job(ann)
    services.confirm_job(job=job, user=ann)
    job.refresh_from_db()
    assert job.status == BulkJob.RUNNING and job.stage == BulkJob.STAGE_WRITE
    assert sorted(get_queue().job_ids) == sorted(task_id(job.pk, "write", i) for i in (0, 1))
    confirmed_at = job.confirmed_at

    services.confirm_job(job=job, user=ann)
    job.refresh_from_db()
    assert job.confirmed_at == confirmed_at and job.status == BulkJob.RUNNING
    assert len(get_queue().job_ids) == 2


def test_confirm_of_an_atomic_all_job_sends_one_write_task(rq_queue, ann):
    job = validated_job(ann, atomic="all")
    services.confirm_job(job=job, user=ann)
    assert get_queue().job_ids == [task_id(job.pk, "write")]


def test_confirm_waits_queued_when_the_user_has_no_free_slot(rq_queue, ann, settings):
    settings.BULKOPS = {**settings.BULKOPS, "MAX_RUNNING_JOBS_PER_USER": 1}
    make_job(user=ann, status=BulkJob.RUNNING, stage=BulkJob.STAGE_WRITE)
    job = validated_job(ann)
    services.confirm_job(job=job, user=ann)
    job.refresh_from_db()
    assert (job.status, job.stage) == (BulkJob.QUEUED, BulkJob.STAGE_WRITE)
    assert get_queue().job_ids == []


@pytest.mark.parametrize("status", [BulkJob.VALIDATING, BulkJob.FAILED, BulkJob.RUNNING])
def test_only_a_validated_job_can_be_confirmed(ann, status):
    job = make_job(user=ann, status=status)
    with pytest.raises(services.JobStateError, match=f"this one is {status}"):
        services.confirm_job(job=job, user=ann)


@pytest.mark.parametrize(
    "action", [services.confirm_job, services.cancel_job, services.retry_failed_chunks]
)
def test_another_users_job_is_refused(ann, bob, action):
    job = validated_job(ann)
    with pytest.raises(services.JobStateError, match="another user"):
        action(job=job, user=bob)


def test_a_superuser_may_act_on_any_job(rq_queue, ann):
    admin = get_user_model().objects.create_superuser("root")
    job = validated_job(ann)
    services.cancel_job(job=job, user=admin)
    assert BulkJob.objects.get(pk=job.pk).status == BulkJob.CANCELLED


def test_cancel_counts_the_rows_never_attempted_and_tells_once(rq_queue, ann, finished):
    job = make_job(
        user=ann, chunks=3, chunk_state=BulkChunk.VALIDATED,
        status=BulkJob.RUNNING, stage=BulkJob.STAGE_WRITE,
    )  # fmt: skip
    BulkChunk.objects.filter(job=job, index=0).update(
        state=BulkChunk.DONE, created=9, errors=1, invalid=1, outcome={"s": "c" * 9 + "e"}
    )
    BulkChunk.objects.filter(job=job, index=1).update(invalid=2)

    services.cancel_job(job=job, user=ann)
    services.cancel_job(job=job, user=ann)  # again: nothing more happens

    job.refresh_from_db()
    assert job.status == BulkJob.CANCELLED and job.finished_at is not None
    assert (job.created, job.errors, job.unprocessed) == (9, 3, 18)
    assert finished == [(job.pk, BulkJob.CANCELLED)]


def test_an_ended_job_cannot_be_cancelled(ann):
    job = make_job(user=ann, status=BulkJob.COMPLETED)
    with pytest.raises(services.JobStateError, match="already ended"):
        services.cancel_job(job=job, user=ann)


def test_retry_sends_the_failed_chunks_again(rq_queue, ann):
    job = make_job(
        user=ann, chunks=3, chunk_state=BulkChunk.DONE,
        status=BulkJob.PARTIAL, stage=BulkJob.STAGE_DONE,
    )  # fmt: skip
    BulkChunk.objects.filter(job=job, index=1).update(
        state=BulkChunk.FAILED, failed_stage="write", error="OperationalError: gone", attempts=4
    )
    BulkJob.objects.filter(pk=job.pk).update(chunks_done=2, chunks_failed=1, notified=True)

    services.retry_failed_chunks(job=job, user=ann)

    job.refresh_from_db()
    chunk = job.chunks.get(index=1)
    assert (job.status, job.stage, job.chunks_failed, job.notified) == (
        BulkJob.RUNNING, BulkJob.STAGE_WRITE, 0, False,
    )  # fmt: skip
    assert (chunk.state, chunk.attempts, chunk.error) == (BulkChunk.VALIDATED, 0, "")
    assert get_queue().job_ids == [task_id(job.pk, "write", 1)]


def test_retry_of_a_failed_validation_validates_again(rq_queue, ann):
    job = make_job(user=ann, chunks=2, status=BulkJob.FAILED, stage=BulkJob.STAGE_VALIDATE)
    BulkChunk.objects.filter(job=job, index=0).update(state=BulkChunk.VALIDATED)
    BulkChunk.objects.filter(job=job, index=1).update(
        state=BulkChunk.FAILED, failed_stage="validate"
    )
    BulkJob.objects.filter(pk=job.pk).update(chunks_validated=1)

    services.retry_failed_chunks(job=job, user=ann)

    job.refresh_from_db()
    assert (job.status, job.stage) == (BulkJob.VALIDATING, BulkJob.STAGE_VALIDATE)
    assert get_queue().job_ids == [task_id(job.pk, "validate", 1)]


def test_a_job_without_failed_chunks_has_nothing_to_retry(ann):
    job = make_job(user=ann, status=BulkJob.FAILED, error="The file is not a CSV.")
    with pytest.raises(services.JobStateError, match="no failed chunks.*not a CSV"):
        services.retry_failed_chunks(job=job, user=ann)


def test_visible_jobs_are_ones_own_or_all_for_a_superuser(ann, bob):
    mine = make_job(user=ann)
    make_job(user=bob)
    admin = get_user_model().objects.create_superuser("root")
    assert list(services.visible_jobs(ann)) == [mine]
    assert services.visible_jobs(admin).count() == 2
    assert services.visible_jobs(None).count() == 0


def test_row_errors_are_the_jobs_failed_rows(ann):
    job = make_job(user=ann)
    BulkRowError.objects.create(job=job, index=4, row=6, values={"sku": "X"}, errors={"a": ["b"]})
    assert [(e.row, e.errors) for e in job.row_errors.all()] == [(6, {"a": ["b"]})]
