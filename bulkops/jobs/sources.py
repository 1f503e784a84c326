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
from bulkops.engine.readers.headers import FieldIndex, normalise_header
from bulkops.exceptions import BulkOpsError, InvalidOptions

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
        if job.column_map:
            source = open_mapped_rows(
                fileobj, filename, serializer, job.column_map,
                mode=job.mode, natural_key=natural_key, sheet=job.sheet or None,
            )  # fmt: skip
        else:
            source = open_rows(
                fileobj, filename, serializer=serializer, mode=job.mode,
                natural_key=natural_key, sheet=job.sheet or None,
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


class MappedFieldIndex(FieldIndex):
    """The reader's header matching, with the columns of ``column_map`` mapped as given:
    ``{header: field name}``, or ``{header: None}`` to ignore the column. Headers
    compare as the reader compares them (case and spacing ignored); headers the map
    leaves out are matched as usual."""

    def __init__(self, serializer: Any, column_map: Mapping[str, str | None]) -> None:
        super().__init__(serializer)
        self.mapped = {normalise_header(header): name for header, name in column_map.items()}

    def match(self, header: str) -> str | None:
        key = normalise_header(header)
        if key in self.mapped:
            name = self.mapped[key]
            return name if name in self.fields else None
        return super().match(header)


def open_mapped_rows(
    fileobj: Any,
    filename: str,
    serializer: Any,
    column_map: Mapping[str, str | None],
    *,
    mode: str,
    natural_key: Any,
    sheet: str | None,
) -> Any:
    """``open_rows`` with ``column_map`` applied (see ``MappedFieldIndex``)."""
    # open_rows builds its own FieldIndex; the format readers it calls take one.
    from bulkops.engine import natural_key_of, readers
    from bulkops.engine.options import check_mode
    from bulkops.engine.readers.files import check_upload_size, file_size

    check_mode(mode)
    fmt = readers.resolve_format(filename, None)
    on_close: list[Any] = []
    try:
        check_upload_size(file_size(fileobj))
        index = MappedFieldIndex(serializer, column_map)
        key = natural_key_of(serializer, natural_key)
        if fmt in readers.WORKBOOK_FORMATS:
            return readers._open_workbook(fileobj, fmt, index, mode, key, sheet, on_close)
        if fmt == "json":
            return readers._open_json(fileobj, index, on_close)
        return readers._open_text_table(fileobj, fmt, index, mode, key, on_close)
    except BaseException:
        for close in reversed(on_close):
            close()
        raise


def check_column_map(serializer: Any, column_map: Mapping[str, str | None]) -> None:
    """Refuse a map naming a field the file cannot fill, with the fields it may name."""
    index = FieldIndex(serializer)
    wrong = sorted({name for name in column_map.values() if name and name not in index.fields})
    if wrong:
        raise InvalidOptions(
            f"The column map names {', '.join(repr(n) for n in wrong)}, which no column can "
            f"fill; the fields are: {', '.join(sorted(index.fields))}.",
            fields=sorted(index.fields),
        )
