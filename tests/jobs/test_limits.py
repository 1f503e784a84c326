"""At most MAX_RUNNING_JOBS_PER_USER jobs of a user run; the others wait queued."""

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from bulkops.jobs import services
from bulkops.jobs.limits import TooManyJobs, check_can_queue, start_queued_jobs
from bulkops.jobs.models import BulkJob
from bulkops.jobs.queue import get_queue, task_id
from tests.jobs.factories import make_job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ann():
    return get_user_model().objects.create_user("ann")


def test_queued_jobs_start_while_slots_are_free(rq_queue, ann, settings):
    settings.BULKOPS = {**settings.BULKOPS, "MAX_RUNNING_JOBS_PER_USER": 2}
    jobs = [make_job(user=ann) for _ in range(3)]
    started = start_queued_jobs(ann.pk)
    assert [j.pk for j in started] == [j.pk for j in jobs[:2]]
    statuses = {j.pk: BulkJob.objects.get(pk=j.pk).status for j in jobs}
    assert list(statuses.values()) == [BulkJob.VALIDATING, BulkJob.VALIDATING, BulkJob.QUEUED]
    assert sorted(get_queue().job_ids) == sorted(task_id(j.pk, "read") for j in jobs[:2])
    assert start_queued_jobs(ann.pk) == []

    BulkJob.objects.filter(pk=jobs[0].pk).update(status=BulkJob.COMPLETED)
    assert [j.pk for j in start_queued_jobs(ann.pk)] == [jobs[2].pk]


def test_a_job_waiting_for_its_confirm_holds_no_slot(rq_queue, ann, settings):
    settings.BULKOPS = {**settings.BULKOPS, "MAX_RUNNING_JOBS_PER_USER": 1}
    make_job(user=ann, status=BulkJob.VALIDATED, stage=BulkJob.STAGE_CONFIRM)
    waiting = make_job(user=ann)
    assert [j.pk for j in start_queued_jobs(ann.pk)] == [waiting.pk]


def test_other_users_slots_are_their_own(rq_queue, ann, settings):
    settings.BULKOPS = {**settings.BULKOPS, "MAX_RUNNING_JOBS_PER_USER": 1}
    bob = get_user_model().objects.create_user("bob")
    make_job(user=ann, status=BulkJob.RUNNING, stage=BulkJob.STAGE_WRITE)
    bobs = make_job(user=bob)
    assert start_queued_jobs(ann.pk) == []
    assert [j.pk for j in start_queued_jobs(bob.pk)] == [bobs.pk]


def test_too_many_queued_jobs_are_refused_with_retry_after(ann, settings):
    settings.BULKOPS = {"MAX_QUEUED_JOBS_PER_USER": 2}
    make_job(user=ann)
    assert services.can_queue(ann)
    make_job(user=ann)
    assert not services.can_queue(ann)
    with pytest.raises(TooManyJobs) as caught:
        check_can_queue(ann)
    assert caught.value.extra["retry_after"] > 0
    assert "2 jobs waiting" in caught.value.message


@pytest.mark.skipif(connection.vendor == "sqlite", reason="needs concurrent writers (PostgreSQL)")
def test_requests_racing_for_the_last_queue_place_get_one_job(rq_queue, ann, settings):
    # One job runs (the user's only slot), so new jobs wait queued; one place is left.
    settings.BULKOPS = {"MAX_RUNNING_JOBS_PER_USER": 1, "MAX_QUEUED_JOBS_PER_USER": 1}
    make_job(user=ann, status=BulkJob.RUNNING, stage=BulkJob.STAGE_WRITE)
    barrier = threading.Barrier(4)
    outcomes = []

    def start():
        try:
            barrier.wait(timeout=10)
            services.start_payload_job(
                user=ann, model="catalog.category", items=[{"name": "x"}], mode="create"
            )
            outcomes.append("started")
        except TooManyJobs:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["refused", "refused", "refused", "started"]
    assert BulkJob.objects.filter(user=ann, status=BulkJob.QUEUED).count() == 1
