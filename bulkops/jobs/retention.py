"""Deleting old finished jobs with everything they keep (``bulk_jobs purge``).

A job's chunks, failed rows and payload go with it (database cascade); its uploaded
file goes from ``BULKOPS["STORAGE"]`` once the rows that name it are gone, so a purge
interrupted halfway leaves at worst a file nobody refers to, never a job without its
file. Jobs still queued or running are never touched.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from django.core.files.storage import InvalidStorageError, storages
from django.db import router, transaction
from django.utils import timezone

from bulkops.conf import bulkops_settings

from .models import BulkJob

logger = logging.getLogger("bulkops.jobs")

#: Jobs deleted per transaction: a big job's rows are many, keep each delete short.
BATCH = 50


@dataclass
class Purged:
    jobs: int = 0
    files: int = 0
    missing_files: list[str] = field(default_factory=list)


def purgeable_jobs(*, older_than: datetime.timedelta) -> object:
    """Finished jobs that ended more than ``older_than`` ago, oldest first."""
    cutoff = timezone.now() - older_than
    return BulkJob.objects.filter(status__in=BulkJob.FINISHED, finished_at__lt=cutoff).order_by(
        "finished_at"
    )


def purge_jobs(*, older_than: datetime.timedelta, dry_run: bool = False) -> Purged:
    """Delete the finished jobs that ended more than ``older_than`` ago, their results
    and their stored files. ``dry_run``: count them, delete nothing."""
    if older_than < datetime.timedelta(0):
        raise ValueError("older_than must not be negative")
    purged = Purged()
    try:
        jobs = purgeable_jobs(older_than=older_than)
    except OverflowError:  # before the year 1: nothing ended then
        return purged
    if dry_run:
        purged.jobs = jobs.count()  # type: ignore[attr-defined]
        purged.files = jobs.exclude(file_name="").count()  # type: ignore[attr-defined]
        return purged
    using = router.db_for_write(BulkJob)
    while True:
        with transaction.atomic(using=using):
            batch = list(
                jobs.select_for_update(skip_locked=True).values_list(  # type: ignore[attr-defined]
                    "pk", "storage", "file_name"
                )[:BATCH]
            )
            if not batch:
                break
            BulkJob.objects.filter(pk__in=[pk for pk, _, _ in batch]).delete()
        purged.jobs += len(batch)
        for _, alias, name in batch:
            if name:
                if _delete_file(alias, name):
                    purged.files += 1
                else:
                    purged.missing_files.append(name)
    return purged


def _delete_file(alias: str, name: str) -> bool:
    try:
        storage = storages[alias or bulkops_settings.STORAGE]
        if not storage.exists(name):
            return False
        storage.delete(name)
    except (InvalidStorageError, OSError) as exc:
        logger.warning("bulkops purge: could not delete %s from storage: %s", name, exc)
        return False
    _remove_empty_folder(storage, name)
    return True


def _remove_empty_folder(storage: Any, name: str) -> None:
    """On a file system, the job's own folder (``bulkops/jobs/<id>/``) goes too when empty."""
    folder = os.path.dirname(name)
    if not folder:
        return
    with contextlib.suppress(NotImplementedError, OSError):  # not a file system, or not empty
        os.rmdir(storage.path(folder))
