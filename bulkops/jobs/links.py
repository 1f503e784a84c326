"""The paths of a job's API resources (``bulkops.jobs.urls``), for responses, e-mails
and commands."""

from __future__ import annotations

from typing import Any

from django.urls import reverse


def job_url(job: Any, name: str = "bulkjob-detail") -> str:
    """The path of a job's resource (``bulkjob-detail``, ``bulkjob-results``, ...)."""
    return reverse(name, kwargs={"pk": str(getattr(job, "pk", job))})


def errors_url(job: Any, fmt: str = "csv") -> str:
    """The path of a job's errors file (``csv`` or ``xlsx``)."""
    return reverse("bulkjob-errors", kwargs={"pk": str(getattr(job, "pk", job)), "fmt": fmt})
