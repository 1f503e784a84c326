"""A job's progress, stage by stage (CONTRACT §3)."""

import pytest
from django.utils import timezone

from bulkops.jobs.models import BulkJob
from tests.jobs.factories import make_job

pytestmark = pytest.mark.django_db


def test_progress_of_the_validation():
    job = make_job(
        status=BulkJob.VALIDATING, stage=BulkJob.STAGE_VALIDATE, total_rows=1000,
        rows_validated=250, invalid_rows=5,
        stage_started_at=timezone.now() - timezone.timedelta(seconds=10),
    )  # fmt: skip
    progress = job.progress
    assert {k: progress[k] for k in ("total", "processed", "succeeded", "failed", "percent")} == {
        "total": 1000, "processed": 250, "succeeded": 245, "failed": 5, "percent": 25.0,
    }  # fmt: skip
    assert progress["stage"] == "validate"
    assert 25 <= progress["eta_seconds"] <= 35  # 750 rows at 25 rows/s


def test_progress_of_the_write_and_the_end():
    job = make_job(
        status=BulkJob.RUNNING, stage=BulkJob.STAGE_WRITE, total_rows=100, rows_written=40,
        created=30, errors=6, rolled_back=4, stage_started_at=timezone.now(),
    )  # fmt: skip
    assert (job.progress["processed"], job.progress["succeeded"], job.progress["failed"]) == (
        40, 30, 10,
    )  # fmt: skip
    job.status, job.stage, job.unprocessed = BulkJob.CANCELLED, BulkJob.STAGE_DONE, 60
    assert job.progress["processed"] == 40
    assert job.progress["unprocessed"] == 60
    assert job.progress["eta_seconds"] == 0


def test_progress_of_an_empty_source():
    job = make_job(status=BulkJob.COMPLETED, stage=BulkJob.STAGE_DONE, total_rows=0)
    assert job.progress["percent"] == 100.0
