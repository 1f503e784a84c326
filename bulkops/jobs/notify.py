"""Telling people a job ended: an e-mail to the user who started it, and the project's
``BULKOPS["JOB_FINISHED"]`` callable (a webhook, a chat message...).

Both hang on ``signals.job_finished``, which the stages send once per ending, in the
worker that ended the job, after the transaction that ended it committed. Neither can
break the job: a failure is logged and the other still runs. The e-mail goes through
Django's mail settings (``EMAIL_BACKEND``; the demo project prints it to the console);
its links start with ``BULKOPS["SITE_URL"]`` (without it, they are paths).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.mail import send_mail
from django.dispatch import receiver
from django.urls import NoReverseMatch, reverse
from django.utils.module_loading import import_string

from bulkops.conf import bulkops_settings

from .links import errors_url, job_url
from .models import BulkJob
from .signals import job_finished

logger = logging.getLogger("bulkops.jobs")

OUTCOMES = {
    BulkJob.COMPLETED: "completed: every row succeeded",
    BulkJob.PARTIAL: "ended partially: some rows failed",
    BulkJob.FAILED: "failed",
    BulkJob.CANCELLED: "was cancelled",
}


def absolute(path: str) -> str:
    base = (bulkops_settings.SITE_URL or "").rstrip("/")
    return f"{base}{path}"


def job_links(job: BulkJob) -> list[tuple[str, str]]:
    """``(label, url)`` of the pages a user wants after a job: the admin's job page,
    the API status, results and failed rows."""
    links = []
    with contextlib.suppress(NoReverseMatch):  # a project without the bulkops admin
        admin_page = reverse("admin:bulkops_bulkjob_change", args=[job.pk])
        links.append(("Job page", absolute(admin_page)))
    links.append(("Status (API)", absolute(job_url(job))))
    links.append(("Row results (API)", absolute(job_url(job, "bulkjob-results"))))
    if job.errors:
        links.append(("Failed rows with their errors (CSV)", absolute(errors_url(job))))
    return links


def what(job: BulkJob) -> str:
    """``"Import of products.xlsx into catalog.product"`` or ``"Bulk update of 2,500
    catalog.product items"``."""
    if job.filename:
        verb = "Import" if job.mode == "create" else f"{job.mode.capitalize()} import"
        return f"{verb} of {job.filename} into {job.model}"
    count = f"{job.total_rows:,} " if job.total_rows is not None else ""
    return f"Bulk {job.mode} of {count}{job.model} items"


def counts_line(job: BulkJob) -> str:
    rows = f"{job.total_rows:,}" if job.total_rows is not None else "unknown"
    if job.dry_run:
        return (
            f"Rows: {rows}. Dry run, nothing written: would create {job.created:,}, "
            f"update {job.updated:,}, delete {job.deleted:,}; failed {job.errors:,}."
        )
    line = (
        f"Rows: {rows}. Created {job.created:,}, updated {job.updated:,}, "
        f"deleted {job.deleted:,}, failed {job.errors:,}"
    )
    if job.rolled_back:
        line += f", rolled back {job.rolled_back:,}"
    if job.unprocessed:
        line += f", not processed {job.unprocessed:,}"
    return line + "."


def job_email(job: BulkJob) -> tuple[str, str]:
    """``(subject, body)`` of the e-mail about ``job``'s end."""
    outcome = OUTCOMES.get(job.status, job.status)
    subject = f"{what(job)} {outcome.split(':')[0]}"
    lines = [
        f"{what(job)} {outcome}.",
        "",
        counts_line(job),
    ]
    if job.error:
        lines += ["", f"Why: {job.error}"]
    if job.rolled_back and not job.dry_run:
        scope = "the whole job" if job.atomic == "all" else "its chunk"
        lines += [
            "",
            f"Valid rows were rolled back: with atomic={job.atomic}, one failed row "
            f"rolls back {scope}.",
        ]
    lines += ["", *(f"{label}: {url}" for label, url in job_links(job))]
    lines += ["", f"Job {job.pk}, started {job.created_at:%Y-%m-%d %H:%M %Z} ({job.source})."]
    return subject, "\n".join(lines) + "\n"


def email_user(job: BulkJob) -> bool:
    """Send the e-mail to the job's user, if the job has one with an address."""
    user = job.user
    address = getattr(user, "email", "") if user is not None else ""
    if not address:
        return False
    subject, body = job_email(job)
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [address])
    return True


def finished_callable() -> Callable[[BulkJob], Any] | None:
    path = bulkops_settings.JOB_FINISHED
    if not path:
        return None
    return import_string(path)


@receiver(job_finished, dispatch_uid="bulkops.jobs.notify.email")
def _email_on_finish(sender: Any, job: BulkJob, **kwargs: Any) -> None:
    try:
        email_user(job)
    except Exception:
        logger.exception("bulkops job %s: the e-mail to its user failed", job.pk)


@receiver(job_finished, dispatch_uid="bulkops.jobs.notify.callable")
def _call_on_finish(sender: Any, job: BulkJob, **kwargs: Any) -> None:
    try:
        callback = finished_callable()
        if callback is not None:
            callback(job)
    except Exception:
        logger.exception(
            "bulkops job %s: BULKOPS['JOB_FINISHED'] (%s) failed",
            job.pk,
            bulkops_settings.JOB_FINISHED,
        )


@checks.register()
def check_job_finished(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``BULKOPS["JOB_FINISHED"]`` names a callable that can be imported."""
    path = bulkops_settings.JOB_FINISHED
    if not path:
        return []
    try:
        target = import_string(path)
    except ImportError as exc:
        return [
            checks.Error(
                f"BULKOPS['JOB_FINISHED'] is {path!r}, which cannot be imported: {exc}.",
                hint="Give the dotted path of a function that takes the finished job.",
                id="bulkops.E010",
            )
        ]
    if not callable(target):
        return [
            checks.Error(
                f"BULKOPS['JOB_FINISHED'] is {path!r}, which is not callable.",
                hint="Give the dotted path of a function that takes the finished job.",
                id="bulkops.E011",
            )
        ]
    return []
