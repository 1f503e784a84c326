"""The job side of the admin import: finding a user's jobs, their pages."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

VALIDATING = ("queued", "validating")


def job_url(job: Any) -> str:
    return reverse("admin:bulkops_bulkjob_change", args=[job.pk])


def active_upload(*, user: Any, model_label: str) -> Any:
    """The user's admin upload of this model that is still waiting or validating."""
    try:
        from bulkops.jobs.models import BulkJob
    except ImportError:  # TODO(admin): drop once the jobs branch is merged
        return None

    return (
        BulkJob.objects.filter(user=user, model=model_label, source="admin", status__in=VALIDATING)
        .order_by("-created_at")
        .first()
    )
