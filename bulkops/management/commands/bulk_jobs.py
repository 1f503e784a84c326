"""Look after bulk jobs (imports and API batches run by the RQ workers).

  list [--status S] [--user NAME] [--limit N]   newest first
  show ID                                       options, progress, outcome, failures
  watch ID                                      a progress bar until the job ends
  cancel ID                                     stop after the chunks in flight
  retry ID                                      run the failed chunks again
  resume                                        re-enqueue the work of jobs no live worker holds
  purge --older-than DAYS [--dry-run]           delete finished jobs and their results

ID is a job's UUID, or its first 8 characters or more. Exit status: 0 done, 1 the job
refused (for watch: a row failed, as bulk_import), 2 bad usage or an unknown job.
"""

from __future__ import annotations

import datetime
import sys
from typing import Any, NoReturn

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from bulkops.exceptions import BulkOpsError
from bulkops.jobs import services
from bulkops.jobs.cli import (
    UNUSABLE,
    UnknownJob,
    counts_of,
    elapsed,
    ending_notes,
    exit_status,
    find_job,
    progress_line,
    watch_job,
)
from bulkops.jobs.links import errors_url, job_url
from bulkops.jobs.models import BulkChunk, BulkJob
from bulkops.jobs.retention import purge_jobs

STATUSES = [status for status, _ in BulkJob.STATUSES]
ROWS_SHOWN = 10


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        listing = actions.add_parser("list", help="jobs, newest first")
        listing.add_argument("--status", "-s", choices=STATUSES, action="append")
        listing.add_argument("--user", "-u", metavar="NAME", help="jobs of this user only")
        listing.add_argument("--limit", "-n", type=int, default=20, metavar="N", help="[20]")
        for name, text in (
            ("show", "a job's options, progress and outcome"),
            ("watch", "a job's progress bar until it ends"),
            ("cancel", "stop a job after the chunks in flight"),
            ("retry", "run a job's failed chunks again"),
        ):
            actions.add_parser(name, help=text).add_argument("id", metavar="ID")
        actions.add_parser("resume", help="re-enqueue the work of jobs no live worker holds")
        purge = actions.add_parser("purge", help="delete finished jobs and their results")
        purge.add_argument("--older-than", type=float, required=True, metavar="DAYS")
        purge.add_argument("--dry-run", "-n", action="store_true", help="count, delete nothing")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            status = getattr(self, f"do_{action}")(**options)
        except UnknownJob as exc:
            self.fail(exc.message, 2)
        except services.JobStateError as exc:
            self.fail(exc.message, 1)
        except BulkOpsError as exc:
            self.fail(exc.message, 2)
        if status:
            sys.exit(status)

    def fail(self, message: str, status: int) -> NoReturn:
        self.stderr.write(message)
        sys.exit(status)

    # -- actions ---------------------------------------------------------------------

    def do_list(self, *, status: list[str] | None, user: str | None, limit: int, **_: Any) -> int:
        if limit < 1:
            raise BulkOpsError(f"--limit must be 1 or more; got {limit}.")
        jobs = BulkJob.objects.select_related("user").order_by("-created_at", "-pk")
        if status:
            jobs = jobs.filter(status__in=status)
        if user is not None:
            model = get_user_model()
            try:
                owner = model._default_manager.get_by_natural_key(user)
            except model.DoesNotExist:
                raise BulkOpsError(f"User {user!r} does not exist.") from None
            jobs = jobs.filter(user=owner)
        total = jobs.count()
        rows = [("ID", "STATUS", "MODEL", "MODE", "SOURCE", "USER", "ROWS", "DONE", "CREATED")]
        for job in jobs[:limit]:
            percent = job.progress["percent"]
            rows.append(
                (
                    str(job.pk),
                    job.status,
                    job.model,
                    job.mode + (" (dry run)" if job.dry_run else ""),
                    job.source,
                    job.user.get_username() if job.user else "-",
                    f"{job.total_rows:,}" if job.total_rows is not None else "?",
                    f"{percent:.0f}%" if percent is not None else "-",
                    f"{job.created_at:%Y-%m-%d %H:%M}",
                )
            )
        if total == 0:
            self.stdout.write("No jobs.")
            return 0
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            self.stdout.write("  ".join(cells).rstrip())
        if total > limit:
            self.stdout.write(f"... {total - limit:,} older jobs; --limit {total} shows them all.")
        return 0

    def do_show(self, *, id: str, **_: Any) -> int:
        job = find_job(id)
        write = self.stdout.write
        write(f"Job {job.pk}: {job.status}")
        what = f"file {job.filename}" if job.file_name else f"{job.total_rows or 0:,} API items"
        write(
            f"  {job.mode} {job.model} from {what}; atomic {job.atomic}, chunk size "
            f"{job.chunk_size:,}{', dry run' if job.dry_run else ''}; source {job.source}, "
            f"user {job.user.get_username() if job.user else '-'}"
        )
        times = [("created", job.created_at), ("started", job.started_at)]
        times.append(("finished", job.finished_at))
        write("  " + ", ".join(f"{name} {when:%Y-%m-%d %H:%M:%S}" for name, when in times if when))
        write(f"  progress: {progress_line(job)}")
        write(
            f"  rows: created {job.created:,}, updated {job.updated:,}, deleted "
            f"{job.deleted:,}, failed {job.errors:,}, rolled back {job.rolled_back:,}, "
            f"not processed {job.unprocessed:,}"
        )
        states = {state: 0 for state, _ in BulkChunk.STATES}
        for state in job.chunks.values_list("state", flat=True):
            states[state] += 1
        write(
            f"  chunks: {job.chunks_total:,} "
            f"({', '.join(f'{count:,} {state}' for state, count in states.items() if count)})"
            if job.chunks_total
            else "  chunks: none yet"
        )
        for chunk in job.chunks.filter(state=BulkChunk.FAILED).order_by("index")[:ROWS_SHOWN]:
            write(f"    chunk {chunk.index + 1} failed after {chunk.attempts} tries: {chunk.error}")
        if job.error:
            write(f"  error: {job.error}")
        failed = list(job.row_errors.order_by("index")[:ROWS_SHOWN])
        if failed:
            from bulkops.errorfile import flatten_errors

            write("  failed rows:")
            for error in failed:
                where = f"row {error.row}" if error.row is not None else f"item {error.index}"
                write(f"    {where}: {flatten_errors(error.errors)}")
            more = job.errors - len(failed)
            if more > 0:
                write(f"    ... and {more:,} more: {errors_url(job)}")
        write(f"  API: {job_url(job)}")
        return 0

    def do_watch(self, *, id: str, verbosity: int, **_: Any) -> int:
        job = find_job(id)
        job = watch_job(job, sys.stderr, warn=self.stderr.write)
        if verbosity:
            from bulkops.management.commands.bulk_import import summary_line

            ok = job.status == BulkJob.COMPLETED and job.failed == 0
            style = self.style.SUCCESS if ok else self.style.WARNING
            self.stdout.write(f"Job {job.pk} {job.status}.")
            self.stdout.write(
                summary_line(counts_of(job), elapsed(job), dry_run=job.dry_run), style
            )
            for line in ending_notes(job):
                self.stdout.write(line)
        status = exit_status(job)
        if status == UNUSABLE and job.error and not verbosity:
            self.stderr.write(job.error)
        return status

    def do_cancel(self, *, id: str, **_: Any) -> int:
        job = services.cancel_job(job=find_job(id), user=None)
        self.stdout.write(
            f"Job {job.pk} cancelled: the chunks in flight finish; "
            f"{job.unprocessed:,} rows will not be processed."
        )
        return 0

    def do_retry(self, *, id: str, **_: Any) -> int:
        job = find_job(id)
        failed = job.chunks.filter(state=BulkChunk.FAILED).count()
        job = services.retry_failed_chunks(job=job, user=None)
        chunks = f"{failed} failed chunk{'s' if failed != 1 else ''}"
        self.stdout.write(f"Job {job.pk} queued again to run its {chunks}.")
        return 0

    def do_resume(self, **_: Any) -> int:
        report = services.resume_jobs()
        jobs = report.get("jobs") or []
        if not report.get("tasks"):
            self.stdout.write("Nothing to resume: a live worker holds every unfinished job.")
            return 0
        self.stdout.write(
            f"Sent {report['tasks']:,} tasks again for {len(jobs):,} "
            f"job{'s' if len(jobs) != 1 else ''}."
        )
        for job_id in jobs:
            self.stdout.write(f"  {job_id}")
        return 0

    def do_purge(self, *, older_than: float, dry_run: bool, **_: Any) -> int:
        if not older_than >= 0:  # also NaN
            raise BulkOpsError(f"--older-than must be 0 days or more; got {older_than:g}.")
        try:
            age = datetime.timedelta(days=older_than)
        except OverflowError:
            raise BulkOpsError(f"--older-than {older_than:g} days is too long ago.") from None
        purged = purge_jobs(older_than=age, dry_run=dry_run)
        days = f"{older_than:g} day{'s' if older_than != 1 else ''}"
        files = f" and {purged.files:,} stored file{'s' if purged.files != 1 else ''}"
        if dry_run:
            self.stdout.write(
                f"Would delete {purged.jobs:,} jobs that ended more than {days} ago{files}."
            )
        else:
            self.stdout.write(
                f"Deleted {purged.jobs:,} jobs that ended more than {days} ago, with their "
                f"results{files}."
            )
            if purged.missing_files:
                self.stdout.write(f"{len(purged.missing_files):,} stored files were already gone.")
        return 0
