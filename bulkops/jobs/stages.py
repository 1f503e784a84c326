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
import time
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from bulkops.conf import bulkops_settings
from bulkops.engine.collection import no_collection
from bulkops.exceptions import BulkOpsError
from bulkops.results import CREATED, DELETED, ERROR, ROLLED_BACK, UPDATED, RowResult

from . import codec
from .batches import (
    TRANSIENT_ERRORS,
    backoff,
    batch_for,
    bulk_model_for,
    close_connection,
    close_connection_if_broken,
    context_for,
    describe,
    forget_job,
    is_file_job,
    job_and_batch,
    serializer_class_for,
    using,
)
from .lease import Heartbeat, claim_chunk, claim_job, new_holder, release_job
from .models import BulkChunk, BulkJob, BulkPayload, BulkRowError
from .outcome import (
    COUNTERS,
    add_counts,
    ended,
    fail_chunk,
    fail_job,
    failed_chunks_message,
    finish_if_written,
    outcome_status,
    refresh_counts,
    rows_label,
    start_next,
)
from .queue import Task, dispatch
from .sources import open_source

# Names other modules (and the job API) import from here.
__all__ = [
    "COUNTERS",
    "batch_for",
    "bulk_model_for",
    "context_for",
    "ended",
    "fail_job",
    "failed_chunks_message",
    "finish_if_written",
    "is_file_job",
    "open_source",
    "outcome_status",
    "refresh_counts",
    "rows_label",
    "serializer_class_for",
    "start_next",
    "using",
]

logger = logging.getLogger("bulkops.jobs")


LETTERS = {CREATED: "c", UPDATED: "u", DELETED: "d", ERROR: "e", ROLLED_BACK: "r"}
STATUS_OF_LETTER = {letter: status for status, letter in LETTERS.items()}
WRITTEN = frozenset({CREATED, UPDATED, DELETED})


class Superseded(Exception):
    """Another delivery of the same task finished the work first: roll this one back."""


class ChunkFailed(Exception):
    """A chunk could not be processed after its retries; the message says why."""


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
            first_row = block[0][1]
            source = codec.dumps(block)
            labels = row_labels(first_row, [r[1] for r in block], [r[2] for r in block])
            with transaction.atomic(using=using()):
                still = BulkJob.objects.filter(pk=job.pk, status=BulkJob.VALIDATING).update(
                    rows_read=F("rows_read") + len(block),
                    chunks_total=F("chunks_total") + 1,
                    progress_at=timezone.now(),
                    heartbeat=timezone.now(),
                )
                if not still:
                    return  # cancelled or failed meanwhile
                BulkChunk.objects.create(
                    job=job,
                    index=index,
                    start=start,
                    size=len(block),
                    first_row=first_row,
                    source=source,
                    outcome=labels,
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


# -- stage: validate -----------------------------------------------------------------


def validate_chunk(job_id: Any, index: int) -> None:
    run_chunk(
        job_id,
        index,
        state=BulkChunk.NEW,
        status=BulkJob.VALIDATING,
        stage=BulkJob.STAGE_VALIDATE,
        work=_validate,
    )


def run_chunk(
    job_id: Any,
    index: int,
    *,
    state: str,
    status: str,
    stage: str,
    work: Callable[[BulkJob, Any, BulkChunk], None],
    defer: frozenset[str] = frozenset(),
) -> None:
    """Claim chunk ``index`` in ``state`` and do ``work(job, batch, chunk)`` on it while
    the job is ``status``, under a heartbeat, retrying what may be retried; a chunk that
    cannot be done is failed with its reason, and an unexpected error is re-raised for
    RQ to record as well."""
    holder = new_holder()
    chunk = claim_chunk(job_id, index, state=state, holder=holder, job_status=status, defer=defer)
    if chunk is None:
        return
    if worn_out(chunk, holder, stage):
        return

    def attempt() -> None:
        # Inside the retries: reading the job and preparing its Batch query the
        # database too, and a dropped connection there is as transient as anywhere.
        job, batch = job_and_batch(job_id)
        work(job, batch, chunk)

    with Heartbeat(holder=holder, chunk=chunk):
        try:
            with_retries(chunk, attempt)
        except Superseded:
            return
        except ChunkFailed as exc:
            forget_job(job_id)
            fail_chunk(chunk, holder, stage=stage, reason=str(exc))
            return
        except Exception as exc:
            forget_job(job_id)
            fail_chunk(chunk, holder, stage=stage, reason=describe(exc))
            raise


def _validate(job: BulkJob, batch: Any, chunk: BulkChunk) -> None:
    from bulkops.engine import SourceRow

    rows = [SourceRow(*row) for row in codec.loads(chunk.source)]
    staged = batch.validate_chunk(start=chunk.start, rows=rows, track_duplicates=False)
    keys = safe_keys(staged.keys)  # read as they are: no JSON-safe copy needed here
    text = staged_text(staged)
    invalid = [r for r in staged.rows if r.errors]
    now = timezone.now()
    with transaction.atomic(using=using()):
        # The chunk's state change and the job's counts, in one statement.
        changes = {
            "state": BulkChunk.VALIDATED,
            "staged": text,
            "keys": codec.compact(keys),
            "invalid": len(invalid),
            "validated_at": now,
            "claimed_by": "",
            "attempts": 0,  # attempts count per stage
            "error": "",
        }
        counts = add_counts(
            job.pk,
            {"rows_validated": chunk.size, "invalid_rows": len(invalid), "chunks_validated": 1},
            returning=["status", "chunks_validated", "chunks_total"],
            along=(BulkChunk.objects.filter(pk=chunk.pk, state=BulkChunk.NEW), changes),
        )
        if counts is None:
            raise Superseded
        BulkRowError.objects.bulk_create(
            [row_error(job, r, r.errors) for r in invalid], batch_size=500
        )
        # The job's row is locked by that update until this commits: if this is the
        # last chunk, no other chunk's count can come after, and this moves the job on.
        if counts.get("status") == BulkJob.CANCELLED:
            finish_if_written(job.pk)  # cancelled meanwhile: its counts take this chunk in
        elif counts.get("chunks_validated") == counts.get("chunks_total"):
            after_validation(job.pk)


def safe_keys(keys: dict[str, list]) -> dict[str, list]:
    """Batch keys with NUL escaped (jsonb refuses it), keeping distinct keys distinct."""
    out = {}
    for constraint, entries in keys.items():
        if not _needs_escape("".join([entry[0] for entry in entries])):
            out[constraint] = entries  # the usual case: one test for the whole column
            continue
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
    """Go on to the duplicate check once the source is read and every chunk validated
    (inside the caller's transaction, if any)."""
    with transaction.atomic(using=using(), savepoint=False):
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
    run_chunk(
        job_id,
        index,
        state=BulkChunk.VALIDATED,
        status=BulkJob.RUNNING,
        stage=BulkJob.STAGE_WRITE,
        work=_write,
        defer=frozenset({"source"}),  # read only for a chunk with rows that fail
    )


def staged_text(staged: Any) -> str:
    """The chunk's staged form as kept in ``BulkChunk.staged``: without the rows as
    given, which the chunk keeps in ``source`` until written (``load_staged`` puts
    them back), and without the batch keys, kept in ``BulkChunk.keys`` (writing needs
    neither)."""
    with no_collection():
        data = staged.to_json(sources=False)
        data["keys"] = {}
        if codec.plain_staged(data):
            return codec.dumps_data(data)
        return json.dumps(data, separators=(",", ":"))


def load_staged(batch: Any, chunk: BulkChunk, *, sources: bool = True) -> Any:
    """The chunk's staged rows (``chunk`` with ``staged``, ``source`` and ``duplicates``);
    ``sources=False``: without the rows as given (``source`` is not read)."""
    from bulkops.engine import StagedChunk

    given = None
    if sources:
        given = [row[0] for row in codec.loads(chunk.source)]
    with no_collection():
        data = codec.loads_data(chunk.staged)
        if given is None:
            given = [None] * len(data["rows"])
        staged = StagedChunk.from_json(data, model=batch.model, sources=given)
    if chunk.duplicates:
        errors = {int(position): e for position, e in json.loads(chunk.duplicates).items()}
        staged = staged.with_errors(errors)
    return staged


class _RowsAsGivenNeeded(Exception):
    """A chunk written without its rows as given has a row that failed: its errors and
    values are worded from them, so the write is rolled back and done again with them."""


def _write(job: BulkJob, batch: Any, chunk: BulkChunk) -> None:
    # The engine calls in_transaction inside the transaction that writes the chunk (and,
    # when it gave up on the chunk, in one of its own): rows and "done" commit together.
    # The rows as given only serve rows that fail; a chunk with none (the usual one) is
    # written without reading them, unless the database refuses one of its rows then.
    if not chunk.invalid and not chunk.duplicates:
        staged = load_staged(batch, chunk, sources=False)

        def lean(results: list[RowResult]) -> None:
            if any(result.status == ERROR for result in results):
                raise _RowsAsGivenNeeded
            record_written(job, chunk, results, staged)

        try:
            batch.write_chunk(staged, in_transaction=lean)
            return
        except (Superseded, *TRANSIENT_ERRORS):
            raise
        except Exception:  # _RowsAsGivenNeeded, or the wording of a refusal without them
            logger.info("bulkops job %s chunk %s: written again with its rows", job.pk, chunk.index)
    staged = load_staged(batch, chunk)
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
                kept = BulkChunk.objects.only("staged", "source", "duplicates").get(pk=chunk.pk)
                staged = load_staged(batch_for(job), kept)
            rows = {r.index: r for r in staged.rows}
            BulkRowError.objects.bulk_create(
                [row_error(job, rows[r.index], r.errors) for r in late if r.index in rows]
            )
    now = timezone.now()
    done = BulkChunk.objects.filter(pk=chunk.pk, state=BulkChunk.VALIDATED)
    changes = {
        "state": BulkChunk.DONE,
        "outcome": outcome_of(chunk, results),
        "staged": "",  # retention: the rows go once written; errors and counts stay
        "source": "",
        "keys": "",
        "created": counts[CREATED],
        "updated": counts[UPDATED],
        "deleted": counts[DELETED],
        "errors": counts[ERROR],
        "rolled_back": counts[ROLLED_BACK],
        "done_at": now,
        "claimed_by": "",
        "error": "",
    }
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
        if not done.update(**changes):
            raise Superseded
        for name, value in written.items():
            totals[name] = totals.get(name, 0) + value
        return
    add_to_job(job, written, along=(done, changes))


def add_to_job(
    job: BulkJob, counts: dict[str, int], *, along: tuple[Any, dict[str, Any]] | None = None
) -> None:
    """Add a written chunk's counts to the job's (with the chunk's own update, ``along``),
    and finish the job if it was the last (the update locks the job's row until the chunk
    commits: no count comes after)."""
    after = add_counts(
        job.pk,
        counts,
        returning=["status", "chunks_done", "chunks_failed", "chunks_total"],
        along=along,
    )
    if after is None:
        raise Superseded
    last = after and after["chunks_done"] + after["chunks_failed"] >= after["chunks_total"]
    if last or after.get("status") == BulkJob.CANCELLED:
        finish_if_written(job.pk)


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
    ids = [r.id for r in results if r.status in WRITTEN]
    if not all(type(i) is int for i in ids):  # the usual integer keys need no shaping
        ids = [codec.jsonb_safe(i) for i in ids]
    return {
        "s": "".join([LETTERS[r.status] for r in results]),
        "ids": ids,
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

    run_job_task(job_id, BulkJob.STAGE_WRITE, lambda job: _write_all(job, progress), report)


def _write_all(job: BulkJob, progress: dict[str, int]) -> None:
    batch = batch_for(job)
    chunks = list(job.chunks.order_by("index").only("pk", "index", "start", "size", "first_row"))
    by_index = {chunk.index: chunk for chunk in chunks}

    def staged_chunks() -> Iterator[Any]:
        # A one-shot iterator: the engine keeps the chunks in a spool file of its own
        # while it writes, so the job never holds every row in memory.
        for chunk in chunks:
            yield load_staged(
                batch, BulkChunk.objects.only("staged", "source", "duplicates").get(pk=chunk.pk)
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
