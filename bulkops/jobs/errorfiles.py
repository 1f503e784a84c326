"""A job's failed rows as an errors file (CSV or XLSX), through ``bulkops.errorfile``.

The rows come as uploaded: a file job's columns under the file's own headers (in file
order), an API job's items under the members they were sent with (in first-seen order),
then ``row`` and ``errors``. Used by ``GET /api/bulk-jobs/<id>/errors.csv`` (streamed)
and by ``bulk_import --async --wait --errors-out``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from bulkops.errorfile import ErrorFileWriter
from bulkops.results import ERROR

from .models import BulkJob
from .results import iter_results
from .stages import serializer_class_for

#: Bytes gathered before a streamed CSV response sends them on.
STREAM_BLOCK = 64 * 1024


def error_file_columns(job: BulkJob) -> tuple[list[str], dict[str, str]]:
    """``(headers, field_for_header)`` of the job's errors file."""
    source = (job.options or {}).get("source") or {}
    columns = source.get("columns")
    if job.file_name and isinstance(columns, dict) and columns:
        # jsonb keeps no key order: the file's order is that of its headers.
        order = [h for h in source.get("headers") or () if h in columns]
        order += sorted(h for h in columns if h not in order)
        return order, {str(header): str(columns[header]) for header in order}
    # An API job (or a file job that failed before its header was read): the members
    # the failed items were sent with, in the serializer's field order, then the others.
    seen: set[str] = set()
    for values in job.row_errors.values_list("values", flat=True).iterator(chunk_size=2000):
        if isinstance(values, dict):
            seen.update(str(name) for name in values)
    order = [name for name in _field_order(job) if name in seen]
    order += sorted(seen.difference(order))
    return order, {name: name for name in order}


def _field_order(job: BulkJob) -> list[str]:
    try:
        serializer_class = serializer_class_for(job)
        return ["id", *serializer_class().fields]
    except Exception:  # a serializer gone from the code: the members sorted by name
        return []


def failed_rows(job: BulkJob) -> Iterator[Any]:
    """The job's failed rows in row order, each a ``RowResult`` with ``values``."""
    return iter_results(job, status=ERROR)


def write_error_file(job: BulkJob, fileobj: IO[bytes], *, format: str = "csv") -> int:
    """Write the job's failed rows to ``fileobj``; returns how many."""
    headers, fields = error_file_columns(job)
    with ErrorFileWriter(fileobj, headers, fields, format=format) as writer:
        for result in failed_rows(job):
            writer.write(result)
    return writer.rows_written


class _Buffer:
    """A binary file that keeps what is written until it is taken."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts, self.size = [], 0
        return data


def stream_csv(job: BulkJob) -> Iterator[bytes]:
    """The CSV errors file in blocks, written as the rows are read: memory stays flat
    however many rows failed."""
    buffer = _Buffer()
    headers, fields = error_file_columns(job)
    writer = ErrorFileWriter(buffer, headers, fields, format="csv")  # type: ignore[arg-type]
    for result in failed_rows(job):
        writer.write(result)
        if buffer.size >= STREAM_BLOCK:
            yield buffer.take()
    writer.close()
    tail = buffer.take()
    if tail:
        yield tail
