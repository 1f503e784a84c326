"""Where a job's rows come from: a file in Django storage, or the items stored with it.

Any worker on any machine reads the same source: the file through
``storages[job.storage]`` (the file system by default, S3 and friends through
django-storages), API items from ``BulkPayload``. A ``column_map`` chosen in the admin
(file header -> field, or ``None`` to ignore the column) is applied by the reader's
own header matching, so a mapped column is read exactly as a matched one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.core.files.storage import storages

from bulkops.conf import bulkops_settings
from bulkops.engine.readers.headers import FieldIndex
from bulkops.exceptions import BulkOpsError

from .batches import bulk_model_for, context_for, is_file_job, serializer_class_for
from .models import BulkJob, BulkPayload


@contextmanager
def open_source(job: BulkJob) -> Iterator[tuple[Iterator[tuple], dict[str, Any]]]:
    """``(rows, info)``: rows as ``(values, row, ref, errors)`` tuples, and what the
    reader learnt of the source (its format, headers, columns, expected row count).

    Raises ``BulkOpsError`` with one sentence when the source cannot be read.
    """
    if not is_file_job(job):
        try:
            payload = BulkPayload.objects.get(job=job)
        except BulkPayload.DoesNotExist:
            raise BulkOpsError("The job's items are missing; start it again.") from None
        items = json.loads(payload.items)
        del payload
        yield _payload_rows(items), {"total_rows": len(items)}
        return
    from bulkops.engine.readers import open_rows

    try:
        storage = storages[job.storage or bulkops_settings.STORAGE]
        fileobj = storage.open(job.file_name, "rb")
    except (OSError, LookupError) as exc:
        raise BulkOpsError(
            f"The uploaded file {job.filename or job.file_name!r} can no longer be read "
            f"from storage ({exc.__class__.__name__}); upload it again."
        ) from None
    with fileobj:
        serializer = serializer_class_for(job)(context=context_for(job))
        natural_key = None if job.serializer else (bulk_model_for(job).natural_key or None)
        filename = job.filename or job.file_name
        source = open_rows(
            fileobj, filename, serializer=serializer, mode=job.mode, natural_key=natural_key,
            sheet=job.sheet or None, column_map=job.column_map or None,
        )  # fmt: skip
        with source:
            info = {
                "format": source.format,
                "sheet": source.sheet,
                "headers": list(source.headers),
                "columns": dict(source.columns),
                "unknown_columns": list(source.unknown_columns),
                "total_rows": source.total_rows,
            }
            yield ((r.values, r.row, r.ref, r.errors) for r in source), info


def _payload_rows(items: list[Any]) -> Iterator[tuple]:
    for item in items:
        ref = None
        if isinstance(item, dict) and "_ref" in item:
            item = dict(item)
            ref = item.pop("_ref")
        yield item, None, ref, None


def check_column_map(serializer: Any, column_map: Mapping[str, str | None]) -> None:
    """Refuse a map naming a field the file cannot fill, with the fields it may name
    (``InvalidOptions``, raised by the reader's own header index)."""
    FieldIndex(serializer, column_map)
