"""Uploads waiting for their column mapping.

Between the upload and the confirmed mapping, the file sits in the jobs'
storage (``BULKOPS["STORAGE"]``: any web process, on any machine, can read it
back) and what the mapping page needs — the header row and a few values — in
the user's session under a random token. Another user's session does not hold
the token, so nobody else can map or start that upload. Files left behind by
abandoned mappings are deleted after ``STALE_AFTER`` by the next upload.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import uuid
from typing import Any

from django.core.files import File
from django.core.files.storage import Storage, storages
from django.utils import timezone

from bulkops.conf import bulkops_settings

PENDING_DIR = "bulkops/pending-mappings"
SESSION_PREFIX = "bulkops.upload."
STALE_AFTER = datetime.timedelta(days=1)


def pending_storage() -> Storage:
    try:
        alias = bulkops_settings.STORAGE
    except AttributeError:  # before the jobs settings exist
        alias = "default"
    return storages[alias]


def new_token() -> str:
    return uuid.uuid4().hex


def save_pending(upload: Any, token: str) -> str:
    """Save ``upload`` under the token; return its storage name."""
    storage = pending_storage()
    base = os.path.basename(upload.name or "upload") or "upload"
    upload.seek(0)
    name = storage.save(f"{PENDING_DIR}/{token}/{base}", upload)
    upload.seek(0)
    return name


def open_pending(name: str) -> File:
    return pending_storage().open(name, "rb")


def delete_pending(name: str) -> None:
    with contextlib.suppress(OSError, NotImplementedError):
        pending_storage().delete(name)


def purge_stale(now: datetime.datetime | None = None) -> int:
    """Delete pending files older than ``STALE_AFTER``; how many went."""
    storage = pending_storage()
    cutoff = (now or timezone.now()) - STALE_AFTER
    removed = 0
    try:
        tokens, _ = storage.listdir(PENDING_DIR)
    except (OSError, NotImplementedError):
        return 0
    for token in tokens:
        folder = f"{PENDING_DIR}/{token}"
        try:
            _, files = storage.listdir(folder)
            for name in files:
                path = f"{folder}/{name}"
                if storage.get_modified_time(path) < cutoff:
                    storage.delete(path)
                    removed += 1
        except (OSError, NotImplementedError):
            continue
    return removed


def remember(session: Any, token: str, state: dict[str, Any]) -> None:
    session[SESSION_PREFIX + token] = state


def recall(session: Any, token: str) -> dict[str, Any] | None:
    value = session.get(SESSION_PREFIX + token)
    return value if isinstance(value, dict) else None


def forget(session: Any, token: str) -> None:
    session.pop(SESSION_PREFIX + token, None)
