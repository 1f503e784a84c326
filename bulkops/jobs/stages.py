"""The stages of a job, each run by RQ tasks (``bulkops.jobs.tasks``) on any worker.

::

    queued -> read -> validate -> check -> [confirm] -> write -> done
              (one task;  (one task    (one task)      (one task per chunk; one task
              streams     per chunk,                    for atomic=all)
              chunks)     in parallel)

- **read**: the source (a file in Django storage, or the payload stored with the job)
  is cut into chunks of ``chunk_size`` rows, each saved with its rows and handed to a
  validation task as soon as it is committed.
- **validate**: the engine validates one chunk (``Batch.validate_chunk``, duplicates only
  inside the chunk) and the chunk keeps its staged form, its batch keys and the errors.
- **check**: once every chunk is validated, one query per unique constraint finds the keys
  held by rows of several chunks; ``Batch.duplicate_errors`` words them as the synchronous
  engine does. Then the job is ``validated`` and waits for ``confirm_job``, or goes on.
- **write**: ``atomic=all`` writes every chunk in one transaction (``Batch.write_all``);
  ``chunk``/``none`` write each chunk in its own task, its rows and its ``done`` mark in
  one transaction (``Batch.write_chunk(in_transaction=...)``). The task that writes the
  last chunk finishes the job. Nothing reads the source or validates again.

Every task leases its chunk (or the job) first (``lease``), works, and ends with a state
change guarded by the state it started from, so a task delivered twice, or healed while
its first delivery still ran, changes nothing the second time.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

from django.core.files.storage import storages
from django.db import (
    InterfaceError,
    OperationalError,
    connections,
    router,
    transaction,
)
from django.db.models import F, Q, Sum
from django.utils import timezone
from django.utils.module_loading import import_string

from bulkops.conf import bulkops_settings
from bulkops.exceptions import BulkOpsError
from bulkops.results import CREATED, DELETED, ERROR, ROLLED_BACK, UPDATED, RowResult

from . import codec
from .lease import Heartbeat, claim_chunk, claim_job, new_holder, release_chunk, release_job
from .models import BulkChunk, BulkJob, BulkPayload, BulkRowError
from .queue import Task, dispatch
from .signals import job_finished

logger = logging.getLogger("bulkops.jobs")

#: Database errors worth trying again: a lost connection, a deadlock, a serialization failure.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)
#: The first retry waits this long; each next one twice as long (with jitter), at most MAX_BACKOFF.
BACKOFF = 0.5
MAX_BACKOFF = 30.0

LETTERS = {CREATED: "c", UPDATED: "u", DELETED: "d", ERROR: "e", ROLLED_BACK: "r"}
STATUS_OF_LETTER = {letter: status for status, letter in LETTERS.items()}


class Superseded(Exception):
    """Another delivery of the same task finished the work first: roll this one back."""


class ChunkFailed(Exception):
    """A chunk could not be processed after its retries; the message says why."""


def using() -> str:
    return router.db_for_write(BulkJob)


# -- the engine, for one job ----------------------------------------------------------


def serializer_class_for(job: BulkJob) -> type:
    if job.serializer:
        return import_string(job.serializer)
    return bulk_model_for(job).serializer_class


def bulk_model_for(job: BulkJob) -> Any:
    from bulkops.registry import registry

    return registry.get(job.model)


def batch_for(job: BulkJob) -> Any:
    """The engine's ``Batch`` with the job's options."""
    from bulkops.engine import Batch

    natural_key = None if job.serializer else (bulk_model_for(job).natural_key or None)
    return Batch(
        serializer_class=serializer_class_for(job),
        mode=job.mode,
        natural_key=natural_key,
        atomic=job.atomic,
        chunk_size=job.chunk_size,
        dry_run=job.dry_run,
        context=context_for(job),
        with_data=False,
    )


def context_for(job: BulkJob) -> dict[str, Any]:
    """The serializer context of a job's rows: what ``bulk_import`` gives, plus the job's."""
    context = dict(job.options.get("context") or {})
    context.update({"request": None, "user": job.user, "bulk_job": job})
    return context


def is_file_job(job: BulkJob) -> bool:
    return bool(job.file_name)


# -- sources -----------------------------------------------------------------------------


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
        options: dict[str, Any] = {}
        if job.column_map is not None:
            options["column_map"] = job.column_map
        source = open_rows(
            fileobj,
            filename=job.filename or job.file_name,
            serializer=serializer,
            mode=job.mode,
            natural_key=None if job.serializer else (bulk_model_for(job).natural_key or None),
            sheet=job.sheet or None,
            **options,
        )
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


# -- job-wide tasks --------------------------------------------------------------------


def run_job_task(
    job_id: Any,
    stage: str,
    work: Callable[[BulkJob], None],
    report: Callable[[], dict[str, Any]] | None = None,
) -> bool:
    """Run the job-wide task of ``stage`` under the job's lease; True if it ran.

    Transient database errors are tried again with backoff, ``CHUNK_RETRIES`` times; a
    source that cannot be read, retries used up, or an unexpected error fail the job
    with the reason (the unexpected error is raised again, for RQ's failed registry).
    """
    holder = new_holder()
    job = claim_job(job_id, stage=stage, holder=holder)
    if job is None:
        return False
    retries = bulkops_settings.CHUNK_RETRIES
    try:
        with Heartbeat(holder=holder, job=job, report=report):
            for attempt in range(retries + 1):
                try:
                    work(job)
                    return True
                except TRANSIENT_ERRORS as exc:
                    close_connection()
                    if attempt == retries:
                        fail_job(
                            job.pk, f"{describe(exc)} (tried {attempt + 1} times). Retry the job."
                        )
                        return False
                    time.sleep(backoff(attempt + 1))
                    job.refresh_from_db()
    except Superseded:
        return False
    except BulkOpsError as exc:
        fail_job(job.pk, exc.message)
        return False
    except Exception as exc:
        close_connection_if_broken()
        fail_job(job.pk, f"The job stopped on an unexpected error: {describe(exc)}")
        raise
    finally:
        release_job(job, holder)
    return False


# -- stage: read ---------------------------------------------------------------------


def read_source(job_id: Any) -> None:
    """Cut the source into chunks; each is sent to validation once committed.

    A reader that died is replaced by one that skips the rows already saved.
    """
    run_job_task(job_id, BulkJob.STAGE_READ, _read)


def _read(job: BulkJob) -> None:
    chunk_size = job.chunk_size
    done = job.chunks.aggregate(rows=Sum("size"))["rows"] or 0
    index = job.chunks.count()
    with open_source(job) as (rows, info):
        BulkJob.objects.filter(pk=job.pk).update(
            total_rows=info.get("total_rows"),
            options={**job.options, "source": {k: v for k, v in info.items() if k != "total_rows"}},
        )
        if done:
            rows = islice(rows, done, None)
        start = done
        while True:
            block = list(islice(rows, chunk_size))
            if not block:
                break
            if not _still(job.pk, BulkJob.VALIDATING):
                return
            first_row = block[0][1]
            with transaction.atomic(using=using()):
                BulkChunk.objects.create(
                    job=job,
                    index=index,
                    start=start,
                    size=len(block),
                    first_row=first_row,
                    source=codec.dumps(block),
                    outcome=row_labels(first_row, [r[1] for r in block], [r[2] for r in block]),
                    heartbeat=timezone.now(),
                )
                BulkJob.objects.filter(pk=job.pk).update(
                    rows_read=F("rows_read") + len(block),
                    chunks_total=F("chunks_total") + 1,
                    progress_at=timezone.now(),
                    heartbeat=timezone.now(),
                )
                dispatch([Task("validate_chunk", str(job.pk), "validate", index)])
            index += 1
            start += len(block)
    with transaction.atomic(using=using()):
        moved = BulkJob.objects.filter(pk=job.pk, stage=BulkJob.STAGE_READ).update(
            stage=BulkJob.STAGE_VALIDATE, total_rows=start, progress_at=timezone.now()
        )
        if moved:
            BulkPayload.objects.filter(job=job).delete()  # the chunks hold the items now
    after_validation(job.pk)


def _still(job_id: Any, status: str) -> bool:
    """Is the job still ``status`` (not cancelled, not failed meanwhile)?"""
    return BulkJob.objects.filter(pk=job_id, status=status).exists()


# -- stage: validate -----------------------------------------------------------------


def validate_chunk(job_id: Any, index: int) -> None:
    holder = new_holder()
    chunk = claim_chunk(job_id, index, state=BulkChunk.NEW, holder=holder)
    if chunk is None:
        return
    job = BulkJob.objects.get(pk=job_id)
    if job.status != BulkJob.VALIDATING:
        release_chunk(chunk, holder)
        return
    if worn_out(chunk, holder, BulkJob.STAGE_VALIDATE):
        return
    with Heartbeat(holder=holder, chunk=chunk):
        try:
            with_retries(chunk, lambda: _validate(job, chunk))
        except Superseded:
            return
        except ChunkFailed as exc:
            fail_chunk(chunk, holder, stage=BulkJob.STAGE_VALIDATE, reason=str(exc))
            return
        except Exception as exc:
            fail_chunk(chunk, holder, stage=BulkJob.STAGE_VALIDATE, reason=describe(exc))
            raise
    after_validation(job.pk)


def _validate(job: BulkJob, chunk: BulkChunk) -> None:
    from bulkops.engine import SourceRow

    batch = batch_for(job)
    rows = [SourceRow(*row) for row in codec.loads(chunk.source)]
    staged = batch.validate_chunk(start=chunk.start, rows=rows, track_duplicates=False)
    keys = batch.chunk_keys(staged)
    invalid = [r for r in staged.rows if r.errors]
    now = timezone.now()
    with transaction.atomic(using=using()):
        changed = BulkChunk.objects.filter(pk=chunk.pk, state=BulkChunk.NEW).update(
            state=BulkChunk.VALIDATED,
            staged=json.dumps(staged.to_json(), separators=(",", ":")),
            keys=json.dumps(safe_keys(keys), separators=(",", ":")),
            invalid=len(invalid),
            validated_at=now,
            claimed_by="",
            attempts=0,  # attempts count per stage
            error="",
        )
        if not changed:
            raise Superseded
        BulkRowError.objects.bulk_create(
            [row_error(job, r, r.errors) for r in invalid], batch_size=500
        )
        BulkJob.objects.filter(pk=job.pk).update(
            rows_validated=F("rows_validated") + chunk.size,
            invalid_rows=F("invalid_rows") + len(invalid),
            chunks_validated=F("chunks_validated") + 1,
            progress_at=now,
        )


def safe_keys(keys: dict[str, list]) -> dict[str, list]:
    """Batch keys with NUL escaped (jsonb refuses it), keeping distinct keys distinct."""
    out = {}
    for constraint, entries in keys.items():
        out[constraint] = [
            [_escape_nul(entry[0]), *entry[1:]] if _needs_escape(entry[0]) else entry
            for entry in entries
        ]
    return out


def _needs_escape(text: str) -> bool:
    return "\x00" in text or "\\" in text


def _escape_nul(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\x00", "\\0")


def row_error(job: BulkJob, staged_row: Any, errors: Any) -> BulkRowError:
    return BulkRowError(
        job=job,
        index=staged_row.index,
        row=staged_row.row,
        ref=codec.jsonb_safe(staged_row.ref),
        values=codec.jsonb_safe(staged_row.source),
        errors=codec.jsonb_safe(errors),
    )


def after_validation(job_id: Any) -> None:
    """Go on to the duplicate check once the source is read and every chunk validated."""
    with transaction.atomic(using=using()):
        moved = BulkJob.objects.filter(
            pk=job_id,
            status=BulkJob.VALIDATING,
            stage=BulkJob.STAGE_VALIDATE,
            chunks_validated=F("chunks_total"),
        ).update(stage=BulkJob.STAGE_CHECK, lease="", heartbeat=timezone.now())
        if moved:
            dispatch([Task("check_duplicates", str(job_id), "check")])


# -- stage: check ---------------------------------------------------------------------


def check_duplicates(job_id: Any) -> None:
    run_job_task(job_id, BulkJob.STAGE_CHECK, _check)


def _check(job: BulkJob) -> None:
    from .duplicates import apply_duplicates

    apply_duplicates(job, batch_for(job))
    with transaction.atomic(using=using()):
        validated(job)


def validated(job: BulkJob) -> None:
    """Every row is validated: wait for the confirm, or write."""
    now = timezone.now()
    fields: dict[str, Any] = {"validated_at": now, "lease": "", "progress_at": now}
    if job.confirm and job.confirmed_at is None:
        fields.update(status=BulkJob.VALIDATED, stage=BulkJob.STAGE_CONFIRM)
    else:
        fields.update(status=BulkJob.RUNNING, stage=BulkJob.STAGE_WRITE, stage_started_at=now)
    moved = BulkJob.objects.filter(pk=job.pk, stage=BulkJob.STAGE_CHECK).update(**fields)
    if not moved:
        raise Superseded
    job.refresh_from_db()
    if job.status == BulkJob.RUNNING:
        if job.chunks_total == 0:
            transaction.on_commit(lambda: finish_if_written(job.pk), using=using())
        else:
            dispatch(write_tasks(job))
    else:
        transaction.on_commit(lambda: start_next(job.user_id), using=using())


# -- stage: write ---------------------------------------------------------------------


def write_tasks(job: BulkJob, *, chunks: list[int] | None = None) -> list[Task]:
    if job.atomic == "all":
        return [Task("write_all", str(job.pk), "write")]
    if chunks is None:
        chunks = list(job.chunks.filter(state=BulkChunk.VALIDATED).values_list("index", flat=True))
    job.chunks.filter(index__in=chunks).update(heartbeat=timezone.now(), claimed_by="")
    return [Task("write_chunk", str(job.pk), "write", index) for index in chunks]


def write_chunk(job_id: Any, index: int) -> None:
    """Write one chunk (atomic chunk/none): its rows and its ``done`` mark in one transaction."""
    holder = new_holder()
    chunk = claim_chunk(job_id, index, state=BulkChunk.VALIDATED, holder=holder)
    if chunk is None:
        return
    job = BulkJob.objects.get(pk=job_id)
    if job.status != BulkJob.RUNNING:
        release_chunk(chunk, holder)
        return
    if worn_out(chunk, holder, BulkJob.STAGE_WRITE):
        return
    with Heartbeat(holder=holder, chunk=chunk):
        try:
            with_retries(chunk, lambda: _write(job, chunk))
        except Superseded:
            return
        except ChunkFailed as exc:
            fail_chunk(chunk, holder, stage=BulkJob.STAGE_WRITE, reason=str(exc))
            return
        except Exception as exc:
            fail_chunk(chunk, holder, stage=BulkJob.STAGE_WRITE, reason=describe(exc))
            raise
    finish_if_written(job.pk)


def load_staged(batch: Any, chunk: BulkChunk) -> Any:
    from bulkops.engine import StagedChunk

    staged = StagedChunk.from_json(json.loads(chunk.staged), model=batch.model)
    if chunk.duplicates:
        errors = {int(position): e for position, e in json.loads(chunk.duplicates).items()}
        staged = staged.with_errors(errors)
    return staged


def _write(job: BulkJob, chunk: BulkChunk) -> None:
    batch = batch_for(job)
    staged = load_staged(batch, chunk)
    # The engine calls this inside the transaction that writes the chunk (and, when it
    # gave up on the chunk, in one of its own): rows and "done" commit together.
    batch.write_chunk(
        staged, in_transaction=lambda results: record_written(job, chunk, results, staged)
    )


def record_written(
    job: BulkJob,
    chunk: BulkChunk,
    results: list[RowResult],
    staged: Any = None,
    *,
    totals: dict[str, int] | None = None,
) -> None:
    """Mark the chunk done with its outcome, inside the transaction that wrote it, and
    add its counts to the job's (or to ``totals``, for the caller to add at the end).

    Rows the database refused at write time become ``BulkRowError``s too; their values
    come from ``staged`` (else the chunk's staged rows are read again).
    """
    results = sorted(results, key=lambda r: r.index)
    counts = dict.fromkeys(LETTERS, 0)
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    failed = [r.index for r in results if r.status == ERROR]
    if failed:
        known = set(
            BulkRowError.objects.filter(job=job, index__in=failed).values_list("index", flat=True)
        )
        late = [r for r in results if r.status == ERROR and r.index not in known]
        if late:
            if staged is None:
                kept = BulkChunk.objects.only("staged", "duplicates").get(pk=chunk.pk)
                staged = load_staged(batch_for(job), kept)
            rows = {r.index: r for r in staged.rows}
            BulkRowError.objects.bulk_create(
                [row_error(job, rows[r.index], r.errors) for r in late if r.index in rows]
            )
    now = timezone.now()
    changed = BulkChunk.objects.filter(pk=chunk.pk, state=BulkChunk.VALIDATED).update(
        state=BulkChunk.DONE,
        outcome=outcome_of(chunk, results),
        staged="",  # retention: the rows go once written; errors and counts stay
        source="",
        keys="",
        created=counts[CREATED],
        updated=counts[UPDATED],
        deleted=counts[DELETED],
        errors=counts[ERROR],
        rolled_back=counts[ROLLED_BACK],
        done_at=now,
        claimed_by="",
        error="",
    )
    if not changed:
        raise Superseded
    written = {
        "rows_written": len(results),
        "created": counts[CREATED],
        "updated": counts[UPDATED],
        "deleted": counts[DELETED],
        "errors": counts[ERROR],
        "rolled_back": counts[ROLLED_BACK],
        "chunks_done": 1,
    }
    if totals is not None:
        for name, value in written.items():
            totals[name] = totals.get(name, 0) + value
        return
    add_to_job(job, written)


def add_to_job(job: BulkJob, counts: dict[str, int]) -> None:
    BulkJob.objects.filter(pk=job.pk).update(
        progress_at=timezone.now(), **{name: F(name) + value for name, value in counts.items()}
    )


def row_labels(first_row: int | None, rows: list[Any], refs: list[Any]) -> dict[str, Any] | None:
    """The chunk's row numbers and refs, when they cannot be derived from ``first_row``."""
    regular = (first_row is None and all(r is None for r in rows)) or (
        first_row is not None and rows == list(range(first_row, first_row + len(rows)))
    )
    labels = {
        "rows": None if regular else rows,
        "refs": codec.jsonb_safe(refs) if any(ref is not None for ref in refs) else None,
    }
    return labels if any(v is not None for v in labels.values()) else None


def outcome_of(chunk: BulkChunk, results: list[RowResult]) -> dict[str, Any]:
    """One status letter per row, the ids of the rows written, and row numbers and refs
    where they cannot be derived from the chunk."""
    return {
        "s": "".join(LETTERS[r.status] for r in results),
        "ids": [codec.jsonb_safe(r.id) for r in results if r.status in (CREATED, UPDATED, DELETED)],
        **(
            row_labels(chunk.first_row, [r.row for r in results], [r.ref for r in results])
            or {"rows": None, "refs": None}
        ),
    }


def write_all(job_id: Any) -> None:
    """Write every chunk in one transaction (atomic=all)."""
    progress = {"rows": 0}

    def report() -> dict[str, Any]:
        return {"rows_written": progress["rows"]}

    if run_job_task(job_id, BulkJob.STAGE_WRITE, lambda job: _write_all(job, progress), report):
        finish_if_written(job_id)


def _write_all(job: BulkJob, progress: dict[str, int]) -> None:
    batch = batch_for(job)
    chunks = list(job.chunks.order_by("index").only("pk", "index", "start", "size", "first_row"))
    by_index = {chunk.index: chunk for chunk in chunks}

    def staged_chunks() -> Iterator[Any]:
        # A one-shot iterator: the engine keeps the chunks in a spool file of its own
        # while it writes, so the job never holds every row in memory.
        for chunk in chunks:
            yield load_staged(
                batch, BulkChunk.objects.only("staged", "duplicates").get(pk=chunk.pk)
            )

    def on_progress(stage: str, done: int) -> None:
        progress["rows"] = done

    # The job's row is updated once, with the last chunk: the heartbeat thread reports
    # the progress on it meanwhile, through its own connection, and must not wait.
    totals: dict[str, int] = {}
    last = chunks[-1].index if chunks else None

    def mark(results: list[RowResult]) -> None:
        chunk = by_index[results[0].index // job.chunk_size]  # every chunk but the last is full
        if chunk.index == 0:
            totals.clear()  # a new transaction: the rolled-back one's counts are gone
        record_written(job, chunk, results, totals=totals)
        if chunk.index == last:
            add_to_job(job, totals)

    results = batch.write_all(staged_chunks(), in_transaction=mark, on_progress=on_progress)
    close = getattr(results, "close", None)
    if close is not None:
        close()


# -- finishing ---------------------------------------------------------------------------


def finish_if_written(job_id: Any) -> bool:
    """Set the job's outcome once every chunk is written or failed. True if this call did."""
    with transaction.atomic(using=using()):
        job = BulkJob.objects.select_for_update().filter(pk=job_id).first()
        if job is not None and job.status == BulkJob.CANCELLED:
            # Chunks that were in flight at the cancel still count.
            refresh_counts(job)
            job.save(update_fields=COUNTERS)
            return False
        if job is None or job.status != BulkJob.RUNNING:
            return False
        if job.chunks_done + job.chunks_failed < job.chunks_total:
            return False
        refresh_counts(job)
        failed_chunks = list(job.chunks.filter(state=BulkChunk.FAILED).order_by("index"))
        if failed_chunks:
            job.error = failed_chunks_message(failed_chunks)
        job.status = outcome_status(job)
        job.stage = BulkJob.STAGE_DONE
        job.finished_at = timezone.now()
        job.progress_at = job.finished_at
        job.lease = ""
        job.save()
        transaction.on_commit(lambda: ended(job.pk), using=using())
    return True


def outcome_status(job: BulkJob) -> str:
    if job.failed == 0:
        return BulkJob.COMPLETED
    if job.succeeded == 0:
        return BulkJob.FAILED
    return BulkJob.PARTIAL


COUNTERS = [
    "created",
    "updated",
    "deleted",
    "errors",
    "rolled_back",
    "rows_written",
    "unprocessed",
    "total_rows",
]


def refresh_counts(job: BulkJob) -> None:
    """The job's counters summed again from its chunks (their truth), on ``job``."""
    done = Q(state=BulkChunk.DONE)
    totals = job.chunks.aggregate(
        created=Sum("created"),
        updated=Sum("updated"),
        deleted=Sum("deleted"),
        errors=Sum("errors"),
        rolled_back=Sum("rolled_back"),
        written=Sum("size", filter=done),
        pending_invalid=Sum("invalid", filter=~done),
        pending_rows=Sum("size", filter=~done),
        rows=Sum("size"),
    )
    for name in ("created", "updated", "deleted", "rolled_back"):
        setattr(job, name, totals[name] or 0)
    job.errors = (totals["errors"] or 0) + (totals["pending_invalid"] or 0)
    job.rows_written = totals["written"] or 0
    job.unprocessed = (totals["pending_rows"] or 0) - (totals["pending_invalid"] or 0)
    if job.total_rows is None:
        job.total_rows = totals["rows"] or 0


def failed_chunks_message(chunks: list[BulkChunk]) -> str:
    parts = [f"chunk {c.index + 1} ({rows_label(c)}): {c.error}" for c in chunks[:5]]
    more = f"; and {len(chunks) - 5} more" if len(chunks) > 5 else ""
    return (
        f"{len(chunks)} chunk{'s' if len(chunks) != 1 else ''} failed and can be retried: "
        + "; ".join(parts)
        + more
        + "."
    )


def rows_label(chunk: BulkChunk) -> str:
    if chunk.first_row is not None:
        return f"rows {chunk.first_row}-{chunk.first_row + chunk.size - 1}"
    return f"items {chunk.start}-{chunk.start + chunk.size - 1}"


def fail_job(job_id: Any, message: str) -> None:
    """End the job ``failed`` with one sentence saying why (an unreadable source, say)."""
    with transaction.atomic(using=using()):
        job = BulkJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_finished:
            return
        refresh_counts(job)
        job.status = BulkJob.FAILED
        job.error = message
        job.finished_at = timezone.now()
        job.progress_at = job.finished_at
        job.lease = ""
        job.save()
        transaction.on_commit(lambda: ended(job_id), using=using())


def fail_chunk(chunk: BulkChunk, holder: str, *, stage: str, reason: str) -> None:
    """The chunk failed for good (until retried): a failed validation fails the job;
    a failed write leaves the other chunks going on."""
    close_connection_if_broken()
    with transaction.atomic(using=using()):
        before = BulkChunk.NEW if stage == BulkJob.STAGE_VALIDATE else BulkChunk.VALIDATED
        changed = BulkChunk.objects.filter(pk=chunk.pk, state=before).update(
            state=BulkChunk.FAILED, failed_stage=stage, error=reason, claimed_by=""
        )
        if not changed:
            return
        if stage == BulkJob.STAGE_WRITE:
            BulkJob.objects.filter(pk=chunk.job_id).update(chunks_failed=F("chunks_failed") + 1)
    logger.warning("bulkops job %s: chunk %s failed: %s", chunk.job_id, chunk.index, reason)
    if stage == BulkJob.STAGE_VALIDATE:
        fail_job(
            chunk.job_id,
            f"Chunk {chunk.index + 1} ({rows_label(chunk)}) could not be validated: {reason} "
            "Retry the failed chunks to go on.",
        )
    else:
        finish_if_written(chunk.job_id)


def ended(job_id: Any) -> None:
    """After a job ended: tell ``job_finished`` receivers once, and start the user's next job."""
    job = BulkJob.objects.filter(pk=job_id).first()
    if job is None:
        return
    if BulkJob.objects.filter(pk=job_id, notified=False).update(notified=True):
        try:
            job_finished.send(sender=BulkJob, job=job)
        except Exception:
            logger.exception("bulkops job %s: a job_finished receiver failed", job_id)
    start_next(job.user_id)


def start_next(user_id: Any) -> None:
    from .limits import start_queued_jobs

    start_queued_jobs(user_id)


# -- resuming a stage -----------------------------------------------------------------


def resume_stage(job: BulkJob, *, force: bool = False) -> None:
    """Send the tasks of the job's current stage that are not done (on commit)."""
    if job.stage == BulkJob.STAGE_READ:
        dispatch([Task("read_source", str(job.pk), "read")], force=force)
    elif job.stage == BulkJob.STAGE_VALIDATE:
        pending = list(job.chunks.filter(state=BulkChunk.NEW).values_list("index", flat=True))
        job.chunks.filter(index__in=pending).update(heartbeat=timezone.now(), claimed_by="")
        dispatch([Task("validate_chunk", str(job.pk), "validate", i) for i in pending], force=force)
        transaction.on_commit(lambda: after_validation(job.pk), using=using())
    elif job.stage == BulkJob.STAGE_CHECK:
        dispatch([Task("check_duplicates", str(job.pk), "check")], force=force)
    elif job.stage == BulkJob.STAGE_WRITE:
        dispatch(write_tasks(job), force=force)
        transaction.on_commit(lambda: finish_if_written(job.pk), using=using())


# -- retries ---------------------------------------------------------------------------


def worn_out(chunk: BulkChunk, holder: str, stage: str) -> bool:
    """Fail a chunk whose workers keep dying on it (a row that exhausts memory, say)
    rather than hand it to worker after worker."""
    tries = bulkops_settings.CHUNK_RETRIES + 1
    if chunk.attempts <= tries:
        return False
    last = f" The last error was: {chunk.error}" if chunk.error else ""
    fail_chunk(
        chunk,
        holder,
        stage=stage,
        reason=f"It was started {chunk.attempts - 1} times and never finished "
        f"(its worker was killed or ran out of memory).{last}",
    )
    return True


def backoff(attempt: int) -> float:
    delay = min(BACKOFF * 2 ** max(attempt - 1, 0), MAX_BACKOFF)
    return delay * random.uniform(0.8, 1.2)


def with_retries(chunk: BulkChunk, work: Callable[[], None]) -> None:
    """``work()``, tried again after transient database errors with exponential backoff,
    at most ``CHUNK_RETRIES`` times; then ``ChunkFailed`` with the last error."""
    retries = bulkops_settings.CHUNK_RETRIES
    attempt = 0
    while True:
        try:
            work()
            return
        except TRANSIENT_ERRORS as exc:
            close_connection()
            attempt += 1
            reason = describe(exc)
            if attempt > retries:
                raise ChunkFailed(
                    f"{reason} (tried {attempt} times; the database kept failing)."
                ) from exc
            logger.warning(
                "bulkops job %s chunk %s: %s; retrying (%s of %s)",
                chunk.job_id,
                chunk.index,
                reason,
                attempt,
                retries,
            )
            time.sleep(backoff(attempt))
            BulkChunk.objects.filter(pk=chunk.pk).update(
                attempts=F("attempts") + 1, heartbeat=timezone.now(), error=reason
            )


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__


def close_connection() -> None:
    """Drop this thread's connection after a database error; the next query reconnects."""
    connection = connections[using()]
    try:
        connection.close()
    except Exception:  # already broken; Django forgets it anyway
        connection.connection = None


def close_connection_if_broken() -> None:
    connections[using()].close_if_unusable_or_obsolete()
