"""Fixing rows of a validated job in place, before its confirm (the admin preview).

The chunks holding the edited rows are validated again from their rows as read, with
the edits applied, by the same engine; then the duplicate check runs again over the
whole job, so an edit that ends a clash (or makes one) changes the other rows' errors
too. All of it in one transaction, with the job locked: a confirm waits for it.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import transaction

from bulkops.exceptions import InvalidOptions

from . import codec
from .models import BulkChunk, BulkJob, BulkRowError


def _chunk_of(job: BulkJob, position: int, is_file: bool) -> BulkChunk | None:
    """The chunk holding the row at ``position`` (row number, or item index)."""
    chunks = job.chunks.all()
    if not is_file:
        return chunks.filter(start__lte=position).order_by("-start").first()
    for chunk in chunks.filter(first_row__lte=position).order_by("-first_row")[:2]:
        rows = (chunk.outcome or {}).get("rows")
        if rows is None and position < chunk.first_row + chunk.size:
            return chunk
        if rows is not None and position in rows:
            return chunk
    return None


def revalidate(job: BulkJob, edits: dict[Any, dict[str, Any]]) -> dict[int, Any]:
    from bulkops.engine import SourceRow

    from .duplicates import apply_duplicates
    from .services import JobStateError
    from .stages import (
        batch_for,
        is_file_job,
        load_staged,
        row_error,
        safe_keys,
        serializer_class_for,
        staged_text,
        using,
    )

    wanted = {int(position): dict(values) for position, values in edits.items()}
    with transaction.atomic(using=using()):
        job = BulkJob.objects.select_for_update().get(pk=job.pk)
        if job.status != BulkJob.VALIDATED:
            raise JobStateError(
                f"Rows can be fixed only while the job waits for its confirm; it is {job.status}.",
                status=job.status,
            )
        fields = set(serializer_class_for(job)().fields)
        for position, values in wanted.items():
            unknown = sorted(set(values) - fields)
            if unknown:
                raise InvalidOptions(
                    f"Unknown field(s) {', '.join(unknown)} in the edit of row {position}; "
                    f"the fields are: {', '.join(sorted(fields))}."
                )
        is_file = is_file_job(job)
        by_chunk: dict[int, tuple[BulkChunk, dict[int, dict]]] = {}
        for position, values in wanted.items():
            chunk = _chunk_of(job, position, is_file)
            if chunk is None:
                raise InvalidOptions(f"The job has no row {position}.")
            by_chunk.setdefault(chunk.pk, (chunk, {}))[1][position] = values
        batch = batch_for(job)
        for chunk, chunk_edits in by_chunk.values():
            rows: list[list[Any]] = []
            for values, row, ref, errors in codec.loads(chunk.source):
                position = row if row is not None else len(rows) + chunk.start
                if position in chunk_edits:
                    values = {
                        **(values if isinstance(values, dict) else {}),
                        **chunk_edits[position],
                    }
                    errors = None  # what the reader found wrong is what the edit fixes
                rows.append([values, row, ref, errors])
            missing = set(chunk_edits) - {
                r[1] if r[1] is not None else chunk.start + n for n, r in enumerate(rows)
            }
            if missing:
                raise InvalidOptions(f"The job has no row {min(missing)}.")
            staged = batch.validate_chunk(
                start=chunk.start, rows=[SourceRow(*r) for r in rows], track_duplicates=False
            )
            chunk.source = codec.dumps(rows)
            chunk.staged = staged_text(staged)
            chunk.keys = json.dumps(safe_keys(batch.chunk_keys(staged)), separators=(",", ":"))
            chunk.invalid = staged.invalid
            chunk.save(update_fields=["source", "staged", "keys", "invalid"])
            first, last = chunk.start, chunk.start + chunk.size
            BulkRowError.objects.filter(job=job, index__gte=first, index__lt=last).delete()
            BulkRowError.objects.bulk_create(
                [row_error(job, r, r.errors) for r in staged.rows if r.errors]
            )
        apply_duplicates(job, batch)
        out: dict[int, Any] = {}
        for chunk, chunk_edits in by_chunk.values():
            chunk.refresh_from_db(fields=["staged", "duplicates"])
            staged = load_staged(batch, chunk)
            for row in staged.rows:
                if row.position in chunk_edits:
                    out[row.position] = row.errors
    return out
