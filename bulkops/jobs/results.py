"""Every row's result of a job, rebuilt from what the job keeps.

A failed row is a ``BulkRowError``; a written chunk keeps one status letter per row and
the ids of its written rows (``BulkChunk.outcome``); rows of chunks never written (a
cancelled job, a chunk that failed) are ``unprocessed``, unless validation already
failed them. The results come in row order, in the item shape of CONTRACT §3
(``RowResult.as_dict()``), without ``data``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bulkops.results import CREATED, DELETED, ERROR, ROLLED_BACK, UPDATED, RowResult

from .models import BulkChunk, BulkJob, BulkRowError

UNPROCESSED = "unprocessed"
RESULT_STATUSES = (CREATED, UPDATED, DELETED, ERROR, ROLLED_BACK, UNPROCESSED)
_LETTER_STATUS = {"c": CREATED, "u": UPDATED, "d": DELETED, "e": ERROR, "r": ROLLED_BACK}
_COUNT_FIELD = {
    CREATED: "created",
    UPDATED: "updated",
    DELETED: "deleted",
    ERROR: "errors",
    ROLLED_BACK: "rolled_back",
}


def result_counts(job: BulkJob) -> dict[str, int]:
    """How many rows have each result status (``count`` for a paginator)."""
    counts = {status: getattr(job, _COUNT_FIELD[status]) for status in _COUNT_FIELD}
    counts[UNPROCESSED] = job.unprocessed
    if not job.is_finished:
        counts[ERROR] = job.row_errors.count()
    return counts


def iter_results(job: BulkJob, *, status: str | None = None, start: int = 0) -> Iterator[RowResult]:
    """The job's row results in row order, only those with ``status`` if given, from the
    ``start``-th of them on (whole chunks before it are skipped by their counts).

    Rows still waiting to be written (a job not finished) are left out, except errors.
    """
    if status is not None and status not in RESULT_STATUSES:
        raise ValueError(f"Unknown status {status!r}; use one of {', '.join(RESULT_STATUSES)}.")
    if status == ERROR:
        yield from _errors(job, start)
        return
    skip = start
    for chunk in job.chunks.order_by("index").defer("source", "staged", "keys", "duplicates"):
        matching = _matching(job, chunk, status)
        if matching is not None and skip >= matching:
            skip -= matching
            continue
        for result in _chunk_results(job, chunk):
            if status is not None and result.status != status:
                continue
            if skip:
                skip -= 1
                continue
            yield result


def _errors(job: BulkJob, start: int) -> Iterator[RowResult]:
    query = job.row_errors.order_by("index")[start:]
    for error in query.iterator(chunk_size=500):
        yield _error_result(error)


def _error_result(error: BulkRowError) -> RowResult:
    return RowResult(
        error.index, ERROR, error.row, error.ref, errors=error.errors, values=error.values
    )


def _matching(job: BulkJob, chunk: BulkChunk, status: str | None) -> int | None:
    """How many of the chunk's results have ``status``, when the counts tell."""
    if chunk.state != BulkChunk.DONE:
        return None
    if status is None:
        return chunk.size
    if status == UNPROCESSED:
        return 0
    return getattr(chunk, _COUNT_FIELD[status])


def _chunk_results(job: BulkJob, chunk: BulkChunk) -> Iterator[RowResult]:
    errors = {
        e.index: e
        for e in job.row_errors.filter(index__gte=chunk.start, index__lt=chunk.start + chunk.size)
    }
    outcome: dict[str, Any] = chunk.outcome or {}
    rows = outcome.get("rows")
    refs = outcome.get("refs")

    def labels(offset: int) -> tuple[int | None, Any]:
        if rows is not None:
            row = rows[offset]
        else:
            row = chunk.first_row + offset if chunk.first_row is not None else None
        return row, refs[offset] if refs is not None else None

    if chunk.state != BulkChunk.DONE:
        if not job.is_finished:
            for index in sorted(errors):
                yield _error_result(errors[index])
            return
        for offset in range(chunk.size):
            index = chunk.start + offset
            if index in errors:
                yield _error_result(errors[index])
            else:
                yield RowResult(index, UNPROCESSED, *labels(offset))
        return
    ids = iter(outcome.get("ids") or ())
    for offset, letter in enumerate(outcome.get("s", "")):
        index = chunk.start + offset
        row, ref = labels(offset)
        status = _LETTER_STATUS[letter]
        if status == ERROR and index in errors:
            yield _error_result(errors[index])
        elif status in (CREATED, UPDATED, DELETED):
            yield RowResult(index, status, row, ref, next(ids, None))
        else:
            yield RowResult(index, status, row, ref)
