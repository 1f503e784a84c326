"""Fixtures and builders for the tests of the job API, the async bulk path and the
commands (tests/jobs/test_api*.py, tests/commands/test_bulk_jobs.py).

``record_job`` writes a job as the stages leave it (chunks with their outcome, failed
rows, counters), through the stages' own functions for the stored shapes, so that the
surfaces can be tested in every state (running, cancelled, failed...) without workers.
Tests that need the stages themselves run real jobs in-process or with workers.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework.test import APIClient

from bulkops.jobs import stages
from bulkops.jobs.models import BulkChunk, BulkJob, BulkRowError
from bulkops.results import CREATED, DELETED, ERROR, UPDATED, RowResult

CATALOG = ("add_product", "change_product", "delete_product", "view_product")


@pytest.fixture
def make_user(db, settings):
    """``make_user("add_product", superuser=False)``: a user with those catalog permissions."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    counter = iter(range(10_000))

    def make(*codenames: str, superuser: bool = False, email: str | None = None):
        n = next(counter)
        user = get_user_model().objects.create_user(
            f"jobuser{n}",
            f"jobuser{n}@example.com" if email is None else email,
            "pw",
            is_staff=True,
            is_superuser=superuser,
        )
        if codenames:
            user.user_permissions.set(
                Permission.objects.filter(content_type__app_label="catalog", codename__in=codenames)
            )
        return user

    return make


@pytest.fixture
def client_for():
    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


def outcome(
    status: str, index: int, *, row: int | None = None, ref: Any = None, id: Any = None, **kw: Any
) -> RowResult:
    return RowResult(index, status, row, ref, id, **kw)


def record_job(
    *,
    user: Any,
    chunks: list[list[RowResult]],
    status: str = BulkJob.COMPLETED,
    written: int | None = None,
    model: str = "catalog.product",
    mode: str = "create",
    atomic: str = "none",
    source: str = BulkJob.SOURCE_API,
    file_columns: dict[str, str] | None = None,
    serializer: str = "",
    created_at: datetime.datetime | None = None,
    finished_at: datetime.datetime | None = None,
    error: str = "",
) -> BulkJob:
    """A job whose chunks hold ``chunks`` (each a list of row results in index order).

    The first ``written`` chunks (default: all) are ``done``; the others are
    ``validated`` (``failed`` for a failed job) and only their ``error`` rows are known.
    ``file_columns`` (header -> field) makes it a file job.
    """
    written = len(chunks) if written is None else written
    now = timezone.now()
    size = max((len(rows) for rows in chunks), default=1)
    job = BulkJob.objects.create(
        user=user,
        source=source,
        model=model,
        serializer=serializer,
        mode=mode,
        atomic=atomic,
        chunk_size=size,
        status=status,
        stage=BulkJob.STAGE_DONE if status in BulkJob.FINISHED else BulkJob.STAGE_WRITE,
        file_name="bulkops/x.csv" if file_columns else "",
        filename="x.csv" if file_columns else "",
        options={"source": {"headers": list(file_columns), "columns": file_columns}}
        if file_columns
        else {},
        total_rows=sum(len(rows) for rows in chunks),
        chunks_total=len(chunks),
        created_at=created_at or now,
        started_at=created_at or now,
        finished_at=(finished_at or now) if status in BulkJob.FINISHED else None,
        error=error,
    )
    start = 0
    for index, rows in enumerate(chunks):
        first_row = rows[0].row if rows and rows[0].row is not None else None
        chunk = BulkChunk(
            job=job, index=index, start=start, size=len(rows), first_row=first_row, state="new"
        )
        done = index < written
        if done:
            chunk.state = BulkChunk.DONE
            chunk.outcome = stages.outcome_of(chunk, rows)
            for name, kind in (
                ("created", CREATED),
                ("updated", UPDATED),
                ("deleted", DELETED),
                ("errors", ERROR),
            ):
                setattr(chunk, name, sum(r.status == kind for r in rows))
            chunk.rolled_back = sum(r.status == "rolled_back" for r in rows)
        else:
            chunk.state = BulkChunk.FAILED if status == BulkJob.FAILED else BulkChunk.VALIDATED
            chunk.outcome = stages.row_labels(
                first_row, [r.row for r in rows], [r.ref for r in rows]
            )
            chunk.invalid = sum(r.status == ERROR for r in rows)
        chunk.save()
        BulkRowError.objects.bulk_create(
            BulkRowError(
                job=job, index=r.index, row=r.row, ref=r.ref, values=r.values, errors=r.errors
            )
            for r in rows
            if r.status == ERROR
        )
        start += len(rows)
    job.chunks_done = written
    stages.refresh_counts(job)
    if status not in BulkJob.FINISHED:
        job.unprocessed = 0  # counted when the job ends
    job.save()
    return job
