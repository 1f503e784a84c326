"""When a job ends: the e-mail to its user and ``BULKOPS["JOB_FINISHED"]``."""

# ruff: noqa: F811 - the fixtures imported from apihelpers are parameters here

import logging

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from bulkops.jobs import services, stages
from bulkops.jobs.models import BulkJob
from bulkops.jobs.notify import job_email
from bulkops.jobs.signals import job_finished
from bulkops.results import CREATED, ERROR, ROLLED_BACK
from tests.jobs.apihelpers import make_user, outcome, record_job  # noqa: F401

pytestmark = pytest.mark.django_db

finished_calls: list = []


def record_finished(job):
    finished_calls.append((job.pk, job.status))


def explode(job):
    raise RuntimeError("the webhook is down")


not_callable = 42


@pytest.fixture(autouse=True)
def _reset():
    finished_calls.clear()


@pytest.fixture
def ann(make_user):
    return make_user("add_product", email="ann@example.com")


def partial_job(user, **kwargs):
    return record_job(
        user=user,
        status=BulkJob.PARTIAL,
        chunks=[
            [outcome(CREATED, 0, id=1), outcome(ERROR, 1, errors={"price": ["Bad."]})],
            [outcome(CREATED, 2, id=2)],
        ],
        **kwargs,
    )


def test_the_user_gets_an_email_with_the_outcome_and_links(ann, mailoutbox, settings):
    settings.BULKOPS = {"SITE_URL": "https://bulk.example.com/"}
    job = partial_job(ann)
    job_finished.send(sender=BulkJob, job=job)
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["ann@example.com"]
    assert mail.from_email == settings.DEFAULT_FROM_EMAIL
    assert mail.subject == "Bulk create of 3 catalog.product items ended partially"
    lines = mail.body.splitlines()
    assert lines[0] == "Bulk create of 3 catalog.product items ended partially: some rows failed."
    assert "Rows: 3. Created 2, updated 0, deleted 0, failed 1." in lines
    base = f"https://bulk.example.com/api/bulk-jobs/{job.pk}"
    assert f"Status (API): {base}/" in lines
    assert f"Row results (API): {base}/results/" in lines
    assert f"Failed rows with their errors (CSV): {base}/errors.csv" in lines
    assert lines[-1].startswith(f"Job {job.pk}, started ")


def test_an_import_that_failed_says_why(ann):
    job = record_job(
        user=ann,
        status=BulkJob.FAILED,
        atomic="all",
        source=BulkJob.SOURCE_ADMIN,
        file_columns={"sku": "sku"},
        error="The uploaded file 'x.csv' can no longer be read from storage; upload it again.",
        chunks=[[outcome(ERROR, 0, row=2, errors={"sku": ["Bad."]}), outcome(ROLLED_BACK, 1)]],
    )
    subject, body = job_email(job)
    assert subject == "Import of x.csv into catalog.product failed"
    assert "Why: The uploaded file 'x.csv' can no longer be read from storage" in body
    assert "Rows: 2. Created 0, updated 0, deleted 0, failed 1, rolled back 1." in body
    assert "with atomic=all, one failed row rolls back the whole job." in body


def test_a_completed_dry_run_and_a_cancelled_job(ann):
    dry = record_job(user=ann, chunks=[[outcome(CREATED, 0)]])
    dry.dry_run = True
    subject, body = job_email(dry)
    assert subject.endswith(" completed")
    assert "Dry run, nothing written: would create 1, update 0, delete 0; failed 0." in body
    assert "errors.csv" not in body  # nothing failed
    cancelled = record_job(
        user=ann,
        status=BulkJob.CANCELLED,
        written=1,
        chunks=[[outcome(CREATED, 0, id=1)], [outcome("unprocessed", 1)]],
    )
    subject, body = job_email(cancelled)
    assert subject.endswith(" was cancelled")
    assert "Created 1, updated 0, deleted 0, failed 0, not processed 1." in body


def test_without_site_url_the_links_are_paths(ann, settings):
    job = partial_job(ann)
    settings.BULKOPS = {}
    assert f"Status (API): /api/bulk-jobs/{job.pk}/" in job_email(job)[1]


def test_no_email_without_an_address_or_a_user(make_user, mailoutbox):
    job_finished.send(sender=BulkJob, job=partial_job(make_user(email="")))
    job_finished.send(sender=BulkJob, job=partial_job(None, source=BulkJob.SOURCE_COMMAND))
    assert mailoutbox == []


def test_job_finished_names_a_callable_run_with_the_job(ann, settings, mailoutbox):
    settings.BULKOPS = {"JOB_FINISHED": "tests.jobs.test_notify.record_finished"}
    job = partial_job(ann)
    job_finished.send(sender=BulkJob, job=job)
    assert finished_calls == [(job.pk, "partial")]
    assert len(mailoutbox) == 1


def test_a_failing_callable_is_logged_and_the_email_still_goes(ann, settings, mailoutbox, caplog):
    settings.BULKOPS = {"JOB_FINISHED": "tests.jobs.test_notify.explode"}
    with caplog.at_level(logging.ERROR, logger="bulkops.jobs"):
        job_finished.send(sender=BulkJob, job=partial_job(ann))
    assert len(mailoutbox) == 1
    assert "BULKOPS['JOB_FINISHED'] (tests.jobs.test_notify.explode) failed" in caplog.text
    assert "the webhook is down" in caplog.text


def test_a_failing_mail_server_does_not_stop_the_callable(ann, settings, caplog):
    settings.EMAIL_BACKEND = "tests.jobs.test_notify.BrokenBackend"
    settings.BULKOPS = {"JOB_FINISHED": "tests.jobs.test_notify.record_finished"}
    job = partial_job(ann)
    with caplog.at_level(logging.ERROR, logger="bulkops.jobs"):
        job_finished.send(sender=BulkJob, job=job)
    assert finished_calls == [(job.pk, "partial")]
    assert "the e-mail to its user failed" in caplog.text


class BrokenBackend:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("no SMTP server")


def test_the_finish_point_notifies_once(ann, settings, mailoutbox):
    settings.BULKOPS = {"JOB_FINISHED": "tests.jobs.test_notify.record_finished"}
    job = partial_job(ann)
    stages.ended(job.pk)
    stages.ended(job.pk)  # a second delivery of the last task
    assert len(mailoutbox) == 1
    assert finished_calls == [(job.pk, "partial")]


def test_cancelling_a_job_notifies_its_user(ann, mailoutbox, django_capture_on_commit_callbacks):
    job = record_job(
        user=ann,
        status=BulkJob.RUNNING,
        written=1,
        chunks=[[outcome(CREATED, 0, id=1)], [outcome("unprocessed", 1)]],
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.cancel_job(job=job, user=ann)
    assert [m.subject for m in mailoutbox] == [
        "Bulk create of 2 catalog.product items was cancelled"
    ]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tests.jobs.test_notify.nowhere", "cannot be imported"),
        ("tests.jobs.test_notify.not_callable", "is not callable"),
    ],
)
def test_a_bad_job_finished_path_fails_the_system_check(settings, path, message):
    settings.BULKOPS = {"JOB_FINISHED": path}
    with pytest.raises(SystemCheckError, match=message):
        call_command("check")
