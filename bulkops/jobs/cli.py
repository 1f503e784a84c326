"""What the commands (``bulk_jobs``, ``bulk_import --async``) share: finding a job by
its id, watching it with a progress bar, and the synchronous import's summary and exit
status for a job that ended."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import IO, Any

from django.core.exceptions import ValidationError

from bulkops.exceptions import BulkOpsError
from bulkops.progress import ProgressBar
from bulkops.results import CREATED, DELETED, ERROR, ROLLED_BACK, UPDATED

from .errorfiles import failed_rows
from .models import BulkJob

#: Seconds between two looks at a job being watched.
POLL_INTERVAL = 0.5
#: The progress bar's line for each stage (the bar's own labels: "Validating", "Writing").
BAR_STAGES = {
    BulkJob.STAGE_QUEUED: "queued",
    BulkJob.STAGE_READ: "read",
    BulkJob.STAGE_VALIDATE: "validate",
    BulkJob.STAGE_CHECK: "validate",
    BulkJob.STAGE_CONFIRM: "validate",
    BulkJob.STAGE_WRITE: "write",
}
#: Exit statuses: as ``bulk_import`` (0 every row succeeded, 1 a row failed, 2 the source
#: could not be read).
OK, ROWS_FAILED, UNUSABLE = 0, 1, 2


class UnknownJob(BulkOpsError):
    default_code = "unknown_job"


def find_job(ident: str) -> BulkJob:
    """The job whose id is ``ident``, or whose id alone starts with it (8+ characters)."""
    text = ident.strip().lower()
    try:
        return BulkJob.objects.select_related("user").get(pk=uuid.UUID(text))
    except (ValueError, ValidationError):
        pass
    except BulkJob.DoesNotExist:
        raise UnknownJob(f"No job has the id {ident}; `bulk_jobs list` shows them.") from None
    if len(text) < 8 or any(c not in "0123456789abcdef-" for c in text):
        raise UnknownJob(
            f"{ident!r} is not a job id: give the UUID `bulk_jobs list` shows "
            "(or its first 8 characters or more)."
        )
    matches = list(BulkJob.objects.select_related("user").filter(pk__startswith=text)[:2])
    if not matches:
        raise UnknownJob(f"No job has an id starting with {ident}; `bulk_jobs list` shows them.")
    if len(matches) > 1:
        raise UnknownJob(f"Several jobs have an id starting with {ident}; give more of it.")
    return matches[0]


def no_worker_warning() -> str | None:
    """A sentence when no RQ worker listens on the jobs' queue (a job would wait forever)."""
    from .queue import get_queue, runs_in_process

    if runs_in_process():
        return None
    try:
        from rq import Worker

        queue = get_queue()
        if Worker.count(queue=queue):
            return None
    except Exception:  # Redis unreachable: the worker would not get the job either
        return (
            "Redis does not answer; the job waits until it does and a worker runs "
            "(python manage.py rqworker bulkops)."
        )
    return (
        f"No RQ worker listens on the queue {queue.name!r}; the job waits until one "
        f"does: python manage.py rqworker {queue.name}"
    )


def watch_job(
    job: BulkJob,
    stream: IO[str],
    *,
    interval: float = POLL_INTERVAL,
    warn: Callable[[str], None] | None = None,
) -> BulkJob:
    """Show the job's progress bar on ``stream`` (a terminal) until the job ends; the
    job as it ended. ``warn`` hears once if no worker takes the job."""
    bar = ProgressBar(stream, total=job.total_rows, min_interval=0)
    shown = None  # the stage the bar shows
    warned = False
    started = time.monotonic()
    try:
        while True:
            job.refresh_from_db()
            progress = job.progress
            stage = BAR_STAGES.get(progress["stage"])
            if stage is not None and stage != "queued" and progress["processed"] is not None:
                bar.update(stage, progress["processed"])
                shown = stage
            if job.is_finished:
                if job.stage == BulkJob.STAGE_DONE and shown is not None:
                    bar.update("write", job.rows_written)
                return job
            if (
                not warned
                and warn is not None
                and job.status == BulkJob.QUEUED
                and time.monotonic() - started > 2
            ):
                warned = True
                message = no_worker_warning()
                if message:
                    warn(message)
            time.sleep(interval)
    finally:
        bar.finish()


def counts_of(job: BulkJob) -> dict[str, int]:
    """The job's outcome as ``bulk_import``'s summary counts it."""
    return {
        CREATED: job.created,
        UPDATED: job.updated,
        DELETED: job.deleted,
        ERROR: job.errors,
        ROLLED_BACK: job.rolled_back,
        "replayed": 0,
    }


def exit_status(job: BulkJob) -> int:
    """0 when every row succeeded, 1 when any failed or was not processed, 2 when the
    source could not be read (the job failed before it had rows)."""
    if job.status == BulkJob.FAILED and job.stage in (BulkJob.STAGE_QUEUED, BulkJob.STAGE_READ):
        return UNUSABLE
    if job.status == BulkJob.COMPLETED and job.failed == 0:
        return OK
    return ROWS_FAILED


def elapsed(job: BulkJob) -> float:
    if job.finished_at is None:
        return 0.0
    return max((job.finished_at - job.created_at).total_seconds(), 0.0)


def failed_rows_into(report: Any, job: BulkJob) -> None:
    """Feed the job's failed rows to ``bulk_import``'s ``Report`` (which shows the first
    few and writes them all to ``--errors-out``)."""
    for result in failed_rows(job):
        report.add(result)


def progress_line(job: BulkJob) -> str:
    p = job.progress
    total = f"{p['total']:,}" if p["total"] is not None else "?"
    percent = f" ({p['percent']:.0f}%)" if p["percent"] is not None else ""
    eta = f", about {p['eta_seconds']} s left" if p["eta_seconds"] else ""
    return (
        f"stage {p['stage']}: {p['processed']:,} of {total} rows{percent}; "
        f"succeeded {p['succeeded']:,}, failed {p['failed']:,}{eta}"
    )


def import_async(
    command: Any,
    *,
    model: str,
    file: str,
    mode: str,
    atomic: str,
    chunk_size: int,
    dry_run: bool,
    user: Any,
    errors_out: str | None,
    sheet: str | None,
    wait: bool,
    verbosity: int,
) -> bool:
    """``bulk_import --async [--wait]``: start a job for ``file``; print its id (alone on
    the last line) and return, or with ``wait`` watch it to its end and report it as the
    synchronous import does. Returns whether any row failed; raises ``BulkOpsError``
    (exit 2) when the job could not read the file."""
    import os
    import sys
    from types import SimpleNamespace

    from django.core.files import File

    from bulkops.management.commands.bulk_import import Interrupted, Report, open_error_file

    from . import services
    from .errorfiles import error_file_columns

    if errors_out and not wait:
        raise BulkOpsError(
            "--errors-out needs --wait with --async; without --wait, download the failed "
            "rows later from /api/bulk-jobs/<id>/errors.csv."
        )
    with open(file, "rb") as fileobj:
        job = services.start_file_job(
            user=user,
            model=model,
            file=File(fileobj, name=os.path.basename(file)),
            filename=os.path.basename(file),
            mode=mode,
            atomic=atomic,
            chunk_size=chunk_size,
            dry_run=dry_run,
            sheet=sheet,
            source=BulkJob.SOURCE_COMMAND,
        )
    if not wait:
        if verbosity:
            command.stdout.write(
                f"Queued the import of {os.path.basename(file)} into {model}, mode {mode}, "
                f"atomic {atomic}{', dry run' if dry_run else ''}. Follow it with: "
                f"python manage.py bulk_jobs watch {job.pk}"
            )
            warning = no_worker_warning()
            if warning and not job.is_finished:
                command.stderr.write(warning)
        command.stdout.write(str(job.pk))
        return False
    if verbosity:
        command.stdout.write(
            f"Job {job.pk} queued; waiting for it to end (Ctrl-C stops the waiting, not the job)."
        )
    stream = sys.stderr if verbosity else _Silent()
    try:
        job = watch_job(job, stream, warn=command.stderr.write)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        raise Interrupted(
            f"Stopped waiting; job {job.pk} goes on: python manage.py bulk_jobs watch {job.pk}"
        ) from None
    status = exit_status(job)
    if status == UNUSABLE:
        raise BulkOpsError(job.error or "The job could not read the file.")
    headers, fields = error_file_columns(job)
    columns = SimpleNamespace(columns={header: fields[header] for header in headers})
    with open_error_file(errors_out, columns) as error_file:
        report = Report(error_file)
        failed_rows_into(report, job)
    if verbosity:
        command.print_report(
            counts_of(job), elapsed(job), report, job.dry_run, job.atomic, errors_out
        )
        for line in ending_notes(job):
            command.stdout.write(line)
    return status != OK


def ending_notes(job: BulkJob) -> list[str]:
    """What a job's ending adds to the synchronous summary: rows never attempted, and
    why the job failed or stopped."""
    notes = []
    if job.unprocessed:
        why = "the job was cancelled" if job.status == BulkJob.CANCELLED else "their chunk failed"
        notes.append(f"{job.unprocessed:,} rows were not processed ({why}).")
    if job.error:
        notes.append(f"The job {job.status}: {job.error}")
    if job.status == BulkJob.CANCELLED and not job.error:
        notes.append("The job was cancelled.")
    return notes


class _Silent:
    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass
