"""``manage.py bulk_jobs``: list, show, watch, cancel, retry, resume, purge; their output
and exit codes. Jobs are recorded as the stages leave them (``record_job``); the
commands on jobs that really run are in tests/jobs/test_api_e2e.py."""

# ruff: noqa: F811 - the fixtures imported from apihelpers are parameters here

import datetime
import io
import threading
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.utils import timezone

from bulkops.jobs.cli import watch_job
from bulkops.jobs.models import BulkChunk, BulkJob, BulkRowError
from bulkops.results import CREATED, ERROR, UPDATED
from tests.jobs.apihelpers import make_user, outcome, record_job  # noqa: F401

pytestmark = pytest.mark.django_db


def run(*args):
    """``bulk_jobs`` with ``args``: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("bulk_jobs", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def ann(make_user):
    user = make_user()
    user.username = "ann"
    user.save()
    return user


def done_job(user=None, **kwargs):
    return record_job(
        user=user,
        source=kwargs.pop("source", BulkJob.SOURCE_COMMAND),
        chunks=[[outcome(CREATED, 0, id=1), outcome(UPDATED, 1, id=2)]],
        **kwargs,
    )


def partial_job(user=None, **kwargs):
    return record_job(
        user=user,
        source=BulkJob.SOURCE_COMMAND,
        status=BulkJob.PARTIAL,
        file_columns={"sku": "sku", "price": "price"},
        chunks=[
            [
                outcome(CREATED, 0, row=2, id=1),
                outcome(ERROR, 1, row=3, errors={"price": ["Must be 0 or more."]}),
            ]
        ],
        **kwargs,
    )


def running_job(user=None):
    return record_job(
        user=user,
        status=BulkJob.RUNNING,
        written=1,
        chunks=[[outcome(CREATED, 0, id=1)], [outcome("unprocessed", 1)]],
    )


# -- list -------------------------------------------------------------------------------


def test_list_shows_the_jobs_newest_first(ann):
    old = done_job(ann, created_at=timezone.now() - datetime.timedelta(hours=1))
    new = partial_job(None)
    code, out, err = run("list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID",
        "STATUS",
        "MODEL",
        "MODE",
        "SOURCE",
        "USER",
        "ROWS",
        "DONE",
        "CREATED",
    ]
    assert lines[1].split()[:8] == [
        str(new.pk),
        "partial",
        "catalog.product",
        "create",
        "command",
        "-",
        "2",
        "100%",
    ]
    assert lines[2].split()[:6] == [
        str(old.pk),
        "completed",
        "catalog.product",
        "create",
        "command",
        "ann",
    ]
    assert len(lines) == 3


def test_list_filters_and_limits(ann):
    done_job(ann)
    partial_job(ann)
    running_job(None)
    code, out, _ = run("list", "--status", "partial", "--status", "running")
    assert code == 0
    assert sorted(line.split()[1] for line in out.splitlines()[1:]) == ["partial", "running"]
    code, out, _ = run("list", "--user", "ann", "-n", "1")
    assert len(out.splitlines()) == 3
    assert out.splitlines()[-1] == "... 1 older jobs; --limit 2 shows them all."


def test_list_without_jobs_and_with_bad_options(db):
    assert run("list") == (0, "No jobs.\n", "")
    assert run("list", "--user", "ghost") == (2, "", "User 'ghost' does not exist.\n")
    assert run("list", "--limit", "0") == (2, "", "--limit must be 1 or more; got 0.\n")
    with pytest.raises(CommandError, match="invalid choice: 'done'"):
        run("list", "--status", "done")


# -- show -------------------------------------------------------------------------------


def test_show_tells_options_progress_outcome_and_failed_rows(ann):
    job = partial_job(ann)
    code, out, err = run("show", str(job.pk))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"Job {job.pk}: partial"
    assert lines[1] == (
        "  create catalog.product from file x.csv; atomic none, chunk size 2; "
        "source command, user ann"
    )
    assert lines[3] == ("  progress: stage done: 2 of 2 rows (100%); succeeded 1, failed 1")
    assert lines[4] == (
        "  rows: created 1, updated 0, deleted 0, failed 1, rolled back 0, not processed 0"
    )
    assert lines[5] == "  chunks: 1 (1 done)"
    assert "  failed rows:" in lines
    assert "    row 3: price: Must be 0 or more." in lines
    assert lines[-1] == f"  API: /api/bulk-jobs/{job.pk}/"


def test_show_tells_failed_chunks_and_the_job_error(db):
    job = record_job(
        user=None,
        status=BulkJob.FAILED,
        written=0,
        error="1 chunk failed and can be retried: chunk 1 (items 0-1): OperationalError.",
        chunks=[[outcome("unprocessed", 0), outcome("unprocessed", 1)]],
    )
    job.chunks.update(error="OperationalError: the server closed the connection", attempts=4)
    out = run("show", str(job.pk))[1]
    assert "  chunks: 1 (1 failed)" in out
    assert (
        "    chunk 1 failed after 4 tries: OperationalError: the server closed the connection"
        in out
    )
    assert "  error: 1 chunk failed and can be retried" in out


def test_a_job_is_found_by_the_start_of_its_id(db):
    job = done_job()
    assert run("show", str(job.pk)[:8])[1].startswith(f"Job {job.pk}: completed")
    assert run("show", str(job.pk).upper())[0] == 0


@pytest.mark.parametrize("action", ["show", "watch", "cancel", "retry"])
def test_unknown_or_bad_ids_exit_2(db, action):
    job = done_job()
    missing = "0" * 8 + str(job.pk)[8:] if not str(job.pk).startswith("0" * 8) else "1" * 36
    code, out, err = run(action, "00000000-0000-4000-8000-000000000000")
    assert (code, out) == (2, "")
    assert (
        err
        == "No job has the id 00000000-0000-4000-8000-000000000000; `bulk_jobs list` shows them.\n"
    )
    code, _, err = run(action, "nope")
    assert code == 2
    assert err.startswith("'nope' is not a job id")
    code, _, err = run(action, "1234567")
    assert code == 2
    code, _, err = run(action, missing[:9])
    assert (code, err) == (
        2,
        f"No job has an id starting with {missing[:9]}; `bulk_jobs list` shows them.\n",
    )


def test_bad_usage_is_refused(db):
    with pytest.raises(CommandError, match="required: ACTION"):
        run()
    with pytest.raises(CommandError, match="invalid choice: 'explode'"):
        run("explode")
    with pytest.raises(CommandError, match="required: ID"):
        run("show")
    with pytest.raises(CommandError, match="required: --older-than"):
        run("purge")


# -- cancel, retry, resume ----------------------------------------------------------------


def test_cancel_stops_a_running_job(db):
    job = running_job()
    code, out, err = run("cancel", str(job.pk))
    assert (code, err) == (0, "")
    assert (
        out
        == f"Job {job.pk} cancelled: the chunks in flight finish; 1 rows will not be processed.\n"
    )
    job.refresh_from_db()
    assert job.status == BulkJob.CANCELLED


def test_cancel_of_an_ended_job_exits_1(db):
    job = done_job()
    assert run("cancel", str(job.pk)) == (
        1,
        "",
        "The job already ended (completed); there is nothing to cancel.\n",
    )


def test_retry_queues_the_failed_chunks(db):
    job = record_job(
        user=None,
        status=BulkJob.PARTIAL,
        written=1,
        chunks=[[outcome(CREATED, 0, id=1)], [outcome("unprocessed", 1)]],
    )
    job.chunks.filter(index=1).update(state=BulkChunk.FAILED, failed_stage=BulkJob.STAGE_WRITE)
    code, out, err = run("retry", str(job.pk))
    assert (code, err) == (0, "")
    assert out == f"Job {job.pk} queued again to run its 1 failed chunk.\n"
    job.refresh_from_db()
    assert job.status == BulkJob.QUEUED
    assert run("retry", str(done_job().pk))[0] == 1


def test_resume_with_nothing_to_resume(db):
    running_job()  # its chunk's lease is fresh: a live worker holds it
    BulkChunk.objects.update(heartbeat=timezone.now(), claimed_by="someone")
    BulkJob.objects.update(heartbeat=timezone.now())
    assert run("resume") == (
        0,
        "Nothing to resume: a live worker holds every unfinished job.\n",
        "",
    )


# -- watch ------------------------------------------------------------------------------


def test_watch_of_an_ended_job_prints_the_summary_and_exits_as_bulk_import(db):
    code, out, err = run("watch", str(done_job().pk))
    assert (code, err) == (0, "")
    assert out.splitlines()[1].startswith(
        "Created 1, updated 1, deleted 0, failed 0, rolled back 0 of 2 rows in "
    )
    job = partial_job()
    code, out, _ = run("watch", str(job.pk))
    assert code == 1
    assert out.splitlines()[0] == f"Job {job.pk} partial."


def test_watch_of_a_job_that_could_not_read_its_file_exits_2(db):
    job = record_job(
        user=None, status=BulkJob.FAILED, chunks=[], error="The file is not a CSV file."
    )
    job.stage = BulkJob.STAGE_READ
    job.save()
    code, out, _ = run("watch", str(job.pk))
    assert code == 2
    assert "The job failed: The file is not a CSV file." in out


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.django_db(transaction=True)
def test_watch_draws_the_progress_bar_until_the_job_ends():
    job = running_job()
    BulkJob.objects.filter(pk=job.pk).update(rows_written=1, total_rows=2)

    def finish():
        time.sleep(0.4)
        BulkJob.objects.filter(pk=job.pk).update(
            status=BulkJob.COMPLETED,
            stage=BulkJob.STAGE_DONE,
            rows_written=2,
            created=2,
            finished_at=timezone.now(),
        )
        connections.close_all()

    screen = Terminal()
    thread = threading.Thread(target=finish)
    thread.start()
    ended = watch_job(job, screen, interval=0.05)
    thread.join()
    assert ended.status == BulkJob.COMPLETED
    drawn = screen.getvalue()
    assert "Writing" in drawn
    assert "1/2 rows" in drawn
    assert "2/2 rows" in drawn
    assert drawn.endswith("\n")


def test_watch_warns_once_when_no_worker_takes_a_queued_job(db, monkeypatch):
    import bulkops.jobs.cli as cli

    job = done_job()
    job.status, job.stage, job.finished_at = BulkJob.QUEUED, BulkJob.STAGE_QUEUED, None
    job.save()
    looks = {"n": 0}
    real = BulkJob.refresh_from_db

    def refresh(self, *args, **kwargs):
        real(self, *args, **kwargs)
        looks["n"] += 1
        if looks["n"] > 6:
            self.status = BulkJob.COMPLETED

    monkeypatch.setattr(BulkJob, "refresh_from_db", refresh)
    monkeypatch.setattr(cli, "no_worker_warning", lambda: "No RQ worker listens.")
    clock = iter(range(0, 1000, 1))
    monkeypatch.setattr(cli.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    warnings = []
    watch_job(job, io.StringIO(), warn=warnings.append)
    assert warnings == ["No RQ worker listens."]


# -- purge ------------------------------------------------------------------------------


def test_purge_deletes_old_finished_jobs_their_results_and_files(db, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    now = timezone.now()
    old = partial_job(finished_at=now - datetime.timedelta(days=40))
    storage = storages["default"]
    name = storage.save(f"bulkops/jobs/{old.pk}/old.csv", ContentFile(b"sku\n"))
    BulkJob.objects.filter(pk=old.pk).update(file_name=name, storage="default")
    recent = partial_job(finished_at=now - datetime.timedelta(days=5))
    running = running_job()
    BulkJob.objects.filter(pk=running.pk).update(created_at=now - datetime.timedelta(days=90))
    assert run("purge", "--older-than", "30", "--dry-run") == (
        0,
        "Would delete 1 jobs that ended more than 30 days ago and 1 stored file.\n",
        "",
    )
    assert BulkJob.objects.filter(pk=old.pk).exists()
    code, out, err = run("purge", "--older-than", "30")
    assert (code, err) == (0, "")
    assert out == (
        "Deleted 1 jobs that ended more than 30 days ago, with their results and 1 stored file.\n"
    )
    assert set(BulkJob.objects.values_list("pk", flat=True)) == {recent.pk, running.pk}
    assert not BulkRowError.objects.filter(job_id=old.pk).exists()
    assert not BulkChunk.objects.filter(job_id=old.pk).exists()
    assert not storage.exists(name)
    assert not (tmp_path / "bulkops" / "jobs" / str(old.pk)).exists()  # its folder too
    assert BulkRowError.objects.filter(job_id=recent.pk).count() == 1


def test_purge_with_zero_days_takes_every_finished_job(db):
    done_job(finished_at=timezone.now() - datetime.timedelta(seconds=1))
    running_job()
    assert run("purge", "--older-than", "0")[1].startswith("Deleted 1 jobs")
    assert BulkJob.objects.get().status == BulkJob.RUNNING


@pytest.mark.parametrize(
    ("days", "message"),
    [
        ("-1", "--older-than must be 0 days or more; got -1."),
        ("nan", "--older-than must be 0 days or more; got nan."),
    ],
)
def test_purge_refuses_a_negative_age(db, days, message):
    assert run("purge", "--older-than", days) == (2, "", message + "\n")


def test_purge_far_in_the_past_deletes_nothing(db):
    done_job()
    assert run("purge", "--older-than", "900000")[0] == 0
    assert run("purge", "--older-than", "1e12") == (
        2,
        "",
        "--older-than 1e+12 days is too long ago.\n",
    )
    assert BulkJob.objects.count() == 1
