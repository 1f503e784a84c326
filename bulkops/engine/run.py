"""``run_batch``: rows in, one ``RowResult`` per row out.

Two passes over the rows, in chunks:

1. validate every chunk (set-based, see ``validate``); validated chunks are kept in
   memory for small batches and spooled to a temporary file for big ones, so a
   million-row file never sits in memory;
2. write the chunks under the transaction mode asked for, and report.

Nothing is written before every row has been validated, in every mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from django.db import transaction
from rest_framework import serializers

from ..conf import ATOMIC_CHOICES, bulkops_settings
from ..exceptions import InvalidOptions
from ..results import CREATED, DELETED, ERROR, ROLLED_BACK, UPDATED, BatchResult, RowResult
from .parallel import ChunkWorkers, workers_for
from .rows import SourceRow
from .store import ChunkStore, CompactRows, prefetched
from .validate import CREATE, DELETE, UPDATE, ChunkValidator, PreparedRow
from .write import ChunkWriter

MODES = ("create", "update", "upsert", "delete")
_STATUS = {CREATE: CREATED, UPDATE: UPDATED, DELETE: DELETED}

# Batches longer than this go on in worker processes where that is allowed (parallel.py).
PARALLEL_AFTER_ROWS = 2000

ProgressCallback = Callable[[str, int], None]
WriteHook = Callable[[str, list[Any]], None]


def _source_chunks(rows: Iterable[Any], size: int) -> Iterator[tuple[int, list[tuple]]]:
    """``(index of the first row, rows as plain tuples)`` per chunk: tuples are what a
    chunk costs least to hand to a worker process."""
    iterator = iter(rows)
    start = 0
    while True:
        block = list(islice(iterator, size))
        if not block:
            return
        yield (
            start,
            [
                (item.values, item.row, item.ref, item.errors)
                if isinstance(item, SourceRow)
                else (item, None, None, None)
                for item in block
            ],
        )
        start += len(block)


def prepare_chunk(start: int, items: list[tuple]) -> list[PreparedRow]:
    return [
        PreparedRow(start + offset, row, ref, values, errors=dict(errors) if errors else None)
        for offset, (values, row, ref, errors) in enumerate(items)
    ]


def apply_late_errors(chunk: list[PreparedRow], late: dict[int, dict]) -> bool:
    """Apply errors found after the chunk was validated; does the chunk hold any error?"""
    has_error = False
    for row in chunk:
        extra = late.pop(row.position, None) if late else None
        if extra:
            errors = row.errors or {}
            for field, messages in extra.items():
                errors.setdefault(field, []).extend(messages)
            row.errors = errors
            row.action = None
        has_error = has_error or row.errors is not None
    return has_error


def results_of(
    chunk: list[PreparedRow], *, rolled_back: bool, dry_run: bool, data: dict | None = None
) -> list[RowResult]:
    """Every row's result, in order, once the chunk's outcome is final."""
    data = data or {}
    out = []
    for row in chunk:
        if row.errors is not None:
            out.append(
                RowResult(row.index, ERROR, row.row, row.ref, errors=row.errors, values=row.values)
            )
        elif rolled_back:
            out.append(RowResult(row.index, ROLLED_BACK, row.row, row.ref))
        else:
            pk = row.instance.pk if row.instance is not None else row.pk
            if dry_run and row.action == CREATE:
                pk = None
            status = _STATUS[row.action]  # type: ignore[index]
            out.append(RowResult(row.index, status, row.row, row.ref, pk, data.get(row.index)))
    return out


def write_chunk(
    chunk: list[PreparedRow],
    *,
    writer: ChunkWriter,
    atomic: str,
    late: dict[int, dict],
    after_write: Callable[[list[PreparedRow]], None] | None = None,
) -> bool:
    """Write one chunk under ``atomic`` ``chunk`` or ``none``; True if it was rolled back."""
    chunk_failed = apply_late_errors(chunk, late)
    if chunk_failed and atomic == "chunk":
        return True
    db = writer.db
    with transaction.atomic(using=db):
        refused = writer.write([r for r in chunk if r.errors is None])
        if refused and atomic == "chunk":
            transaction.set_rollback(True, using=db)
            return True
        if after_write is not None:
            after_write(chunk)
    return False


def check_options(*, mode: str, atomic: str | None, chunk_size: int | None) -> tuple[str, int]:
    """The effective ``atomic`` and ``chunk_size``, or ``InvalidOptions`` saying what is allowed."""
    if mode not in MODES:
        raise InvalidOptions(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")
    atomic = atomic or bulkops_settings.DEFAULT_ATOMIC
    if atomic not in ATOMIC_CHOICES:
        raise InvalidOptions(f"Unknown atomic {atomic!r}; use one of {', '.join(ATOMIC_CHOICES)}.")
    limit = bulkops_settings.MAX_CHUNK_SIZE
    if chunk_size is None:
        chunk_size = min(bulkops_settings.CHUNK_SIZE, limit)
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int)
        or not 1 <= chunk_size <= limit
    ):
        raise InvalidOptions(
            f"chunk_size must be a whole number from 1 to {limit}; got {chunk_size!r}."
        )
    return atomic, chunk_size


def run_batch(
    *,
    serializer_class: type[serializers.BaseSerializer],
    rows: Iterable[Any],
    mode: str,
    natural_key: Sequence[str] | None = None,
    atomic: str | None = None,
    chunk_size: int | None = None,
    dry_run: bool = False,
    context: dict[str, Any] | None = None,
    queryset: Any = None,
    keep_results: bool = True,
    with_data: bool = True,
    on_row: Callable[[RowResult], None] | None = None,
    on_progress: ProgressCallback | None = None,
    after_write: WriteHook | None = None,
    check_target: Callable[[Any], str | None] | None = None,
) -> BatchResult:
    """Validate every row, then write them in chunks; return one result per row.

    ``rows`` are dicts (API items) or ``SourceRow``s (file rows, with row numbers).
    ``natural_key`` names the object for update/upsert/delete (default: the
    serializer's ``Meta.natural_key``); ``queryset`` bounds which objects may be
    updated or deleted (default: the model's default manager).
    ``atomic``: ``all`` — one transaction, any error writes nothing; ``chunk`` —
    one transaction per chunk, a chunk with any error writes nothing; ``none`` —
    every valid row is written. ``dry_run`` validates and reports, writes nothing.
    ``on_progress(stage, rows_done)`` is called after each chunk of each pass
    (stage ``"validate"`` then ``"write"``); ``after_write(action, instances)``
    runs inside the transaction after each chunk's successful write — the place
    for what ``post_save`` receivers would do, since bulk writes send no signals.
    ``check_target(instance)`` is asked for every object an update, upsert or delete
    found (the REST door checks object permissions there): a message refuses the
    object and becomes that row's ``non_field_errors``.
    """
    atomic, chunk_size = check_options(mode=mode, atomic=atomic, chunk_size=chunk_size)
    if natural_key is None:
        natural_key = getattr(getattr(serializer_class, "Meta", None), "natural_key", ())
    validator = ChunkValidator(
        serializer_class=serializer_class,
        mode=mode,
        natural_key=natural_key or (),
        context=context,
        queryset=queryset,
        check_target=check_target,
    )
    result = BatchResult(
        mode=mode, atomic=atomic, dry_run=dry_run, keep_results=keep_results, on_row=on_row
    )
    run = _Run(
        validator=validator,
        result=result,
        serializer_class=serializer_class,
        context=context or {},
        with_data=with_data,
        on_progress=on_progress,
        after_write=after_write,
    )
    compact = None if with_data else CompactRows(validator.model)
    store = ChunkStore(
        pack=compact.pack if compact else None, unpack=compact.unpack if compact else None
    )
    try:
        run.validate(rows, chunk_size, store)
        run.write(store)
    finally:
        if run.pool is not None:
            run.pool.close()
        store.close()
    return result


class _Run:
    """The state of one ``run_batch`` call."""

    def __init__(
        self,
        *,
        validator: ChunkValidator,
        result: BatchResult,
        serializer_class: type[serializers.BaseSerializer],
        context: dict[str, Any],
        with_data: bool,
        on_progress: ProgressCallback | None,
        after_write: WriteHook | None,
    ) -> None:
        self.validator = validator
        self.result = result
        self.serializer_class = serializer_class
        self.context = context
        self.with_data = with_data
        self.on_progress = on_progress
        self.after_write = after_write
        self.invalid_rows = 0
        self.pool: ChunkWorkers | None = None  # worker processes, when pass 1 used them

    def _progress(self, stage: str, done: int) -> None:
        if self.on_progress is not None:
            self.on_progress(stage, done)

    # -- pass 1 ----------------------------------------------------------------------

    def validate(self, rows: Iterable[Any], chunk_size: int, store: ChunkStore) -> None:
        """Pass 1. The first chunks are validated here; a batch that goes on past
        ``PARALLEL_AFTER_ROWS`` is handed to worker processes where that is safe."""
        chunks = _source_chunks(rows, chunk_size)
        done = 0
        workers = None
        for start, items in chunks:
            chunk = prepare_chunk(start, items)
            self.validator.validate_chunk(chunk)
            self.invalid_rows += sum(1 for r in chunk if r.errors is not None)
            store.append(chunk)
            done += len(chunk)
            self._progress("validate", done)
            if workers is None and done >= PARALLEL_AFTER_ROWS:
                workers = workers_for(self.validator)
                if workers:
                    break
        else:
            return
        self.pool = pool = ChunkWorkers(self.validator, workers, store.pack, store.unpack)
        merge = self.validator.merge_batch_keys
        for pickled, size, invalid, keys in pool.map(chunks):
            merge(*keys)
            self.invalid_rows += invalid
            store.append_pickled(pickled)
            done += size
            self._progress("validate", done)

    def _late_errors(self, chunk: list[PreparedRow]) -> bool:
        return apply_late_errors(chunk, self.validator.late_errors)

    # -- pass 2 ----------------------------------------------------------------------

    def write(self, store: ChunkStore) -> None:
        result = self.result
        batch_failed = self.invalid_rows > 0 or bool(self.validator.late_errors)
        if result.dry_run:
            for chunk in store:
                chunk_failed = self._late_errors(chunk)
                failed = batch_failed if result.atomic == "all" else chunk_failed
                self._emit(chunk, rolled_back=failed and result.atomic != "none")
            return
        if result.atomic == "all":
            self._write_all(store, batch_failed)
            return
        done = 0
        late = self.validator.late_errors
        if (
            self.pool is not None
            and self.after_write is None
            and not self.with_data
            and len(late) <= 1000  # handed to every chunk's task
        ):
            # Chunks commit independently here: the workers write them side by side.
            for results in self.pool.write(store.pickled(), result.atomic, late):
                for fields in results:
                    result.add(RowResult(*fields))
                done += len(results)
                self._progress("write", done)
            return
        writer = ChunkWriter(validator=self.validator)
        for chunk in self._to_write(store, writer):
            rolled_back = write_chunk(
                chunk,
                writer=writer,
                atomic=result.atomic,
                late=self.validator.late_errors,
                after_write=self._after_write if self.after_write else None,
            )
            self._emit(chunk, rolled_back=rolled_back)
            done += len(chunk)
            self._progress("write", done)

    def _write_all(self, store: ChunkStore, failed: bool) -> None:
        """One transaction for the batch; results wait until its fate is known."""
        if failed:
            for chunk in store:
                self._late_errors(chunk)
                self._emit(chunk, rolled_back=True)
            return
        writer = ChunkWriter(validator=self.validator)
        written = ChunkStore()
        try:
            db = self.validator.db
            with transaction.atomic(using=db):
                done = 0
                for chunk in self._to_write(store, writer):
                    # Every chunk is written even after a refusal, so the report names
                    # every row the database refuses; the transaction rolls back anyway.
                    refused = writer.write([r for r in chunk if r.errors is None])
                    failed = failed or bool(refused)
                    if not failed:
                        self._after_write(chunk)
                    written.append(chunk)
                    done += len(chunk)
                    self._progress("write", done)
                if failed:
                    transaction.set_rollback(True, using=db)
            for chunk in written:
                self._emit(chunk, rolled_back=failed)
        finally:
            written.close()

    @staticmethod
    def _to_write(store: ChunkStore, writer: ChunkWriter) -> Iterable[list[PreparedRow]]:
        """The chunks in order; a spooled store is read back one chunk ahead."""
        if not store.spooled:
            return store
        writer.prepare([])  # settle the writer's cached plans before the thread starts
        return prefetched(store, writer.prepare)

    def _after_write(self, chunk: list[PreparedRow]) -> None:
        if self.after_write is None:
            return
        model = self.validator.model
        for action in (CREATE, UPDATE, DELETE):
            objs = [r.get_instance(model) for r in chunk if r.action == action and r.errors is None]
            if objs:
                self.after_write(action, objs)

    def _emit(self, chunk: list[PreparedRow], *, rolled_back: bool) -> None:
        """Report every row of a chunk, in order, once its outcome is final."""
        data: dict[int, Any] = {}
        if self.with_data and not rolled_back:
            ok = [r for r in chunk if r.errors is None and r.action in (CREATE, UPDATE, DELETE)]
            if ok:
                model = self.validator.model
                rendered = self.serializer_class(
                    [r.get_instance(model) for r in ok], many=True, context=self.context
                ).data
                data = {r.index: item for r, item in zip(ok, rendered, strict=True)}
        add = self.result.add
        for row_result in results_of(
            chunk, rolled_back=rolled_back, dry_run=self.result.dry_run, data=data
        ):
            add(row_result)
