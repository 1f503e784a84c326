"""``Batch``: one batch's validation and writing, used stage by stage.

    batch = Batch(serializer_class=ProductSerializer, mode="upsert", atomic="chunk")
    staged = batch.validate_chunk(0, rows)            # pass 1, one chunk at a time
    results = batch.write_chunk(staged)               # pass 2, later, anywhere

``run_batch`` composes these calls for a batch run in one process; a job spreads them
over workers: each validates a chunk (``track_duplicates=False``), stores it as JSON
with its batch keys (``chunk_keys``), and once every chunk is validated, the rows that
share a key get their errors from ``duplicate_errors``; a worker then writes each
chunk inside a transaction that also marks it done (``in_transaction``).

Writing never consumes a staged chunk: writing it again (a retry after a rollback)
gives the same results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from django.db import transaction
from rest_framework import serializers

from ..results import RowResult
from .duplicates import SAME_OBJECT, DuplicateIndex, name_duplicates
from .errors import RowErrors, merged, non_field_key
from .objects import RowObjects
from .options import CREATE, DELETE, UPDATE, check_options, natural_key_of
from .report import chunk_results, rendered
from .retry import RETRIES, first_line, retrying
from .staged import StagedChunk
from .store import SpoolStore
from .validate import TARGET, ChunkValidator
from .write import ChunkWriter, Written

InTransaction = Callable[[list[RowResult]], None]
WriteHook = Callable[[str, list[Any]], None]
ProgressCallback = Callable[[str, int], None]


class _ChunkRefused(Exception):
    """Rolls back an ``atomic="chunk"`` chunk the database refused a row of."""

    def __init__(self, written: Written) -> None:
        self.written = written


class Batch:
    """The validation and writing of one batch, for one serializer and set of options.

    Options are checked here (``InvalidOptions``, ``ImproperlyConfigured``), before
    any row. ``natural_key`` defaults to the serializer's ``Meta.natural_key``;
    ``queryset`` bounds which objects may be updated or deleted. ``with_data`` puts
    the serializer's output on each written row's result. ``after_write(action,
    instances)`` runs inside the transaction after each chunk's successful write —
    the place for what ``post_save`` receivers would do, since bulk writes send no
    signals. ``check_target(instance)`` is asked for every object an update, upsert or
    delete row names (the REST door checks object permissions there): a message refuses
    the object and becomes that row's error.
    """

    def __init__(
        self,
        *,
        serializer_class: type[serializers.BaseSerializer],
        mode: str,
        natural_key: Sequence[str] | None = None,
        atomic: str | None = None,
        chunk_size: int | None = None,
        dry_run: bool = False,
        context: dict[str, Any] | None = None,
        queryset: Any = None,
        with_data: bool = False,
        after_write: WriteHook | None = None,
        check_target: Callable[[Any], str | None] | None = None,
    ) -> None:
        self.atomic, self.chunk_size = check_options(
            mode=mode, atomic=atomic, chunk_size=chunk_size
        )
        self.mode = mode
        self.dry_run = dry_run
        self.with_data = with_data
        self.after_write = after_write
        self.serializer_class = serializer_class
        self.context = context or {}
        self.natural_key = natural_key_of(serializer_class, natural_key)
        self.validator = ChunkValidator(
            serializer_class=serializer_class,
            mode=mode,
            natural_key=self.natural_key,
            context=self.context,
            queryset=queryset,
            check_target=check_target,
        )
        self.model = self.validator.model
        self.db = self.validator.db
        self.writer = ChunkWriter(validator=self.validator)
        self.objects = RowObjects(self.validator)
        self._checks = {check.name: check for check in self.validator.unique_checks}
        self._tracked = DuplicateIndex(order=[TARGET, *self._checks], name=self.duplicate_errors)
        self._tracked_invalid = 0
        self._tracking = False

    # -- pass 1 ----------------------------------------------------------------------

    def validate_chunk(
        self, start: int, rows: Iterable[Any], *, track_duplicates: bool = True
    ) -> StagedChunk:
        """Validate the rows (``SourceRow``s or dicts) of the chunk whose first row is
        row ``start`` of the batch: a constant number of queries.

        ``track_duplicates=True``: this Batch remembers the chunk's batch keys, and
        rows that share a key with a row of any chunk it validated get their errors
        when this Batch writes them. ``False``: no duplicate between rows is looked
        for, not even inside the chunk; the caller finds them all from ``chunk_keys``
        with ``duplicate_errors`` (the same words, whichever chunks the rows are in).
        """
        staged = self.validator.validate(start, rows)
        if track_duplicates:
            self._tracking = True
            if staged.rows:
                # Read, not kept: the chunk's own lists, without chunk_keys' JSON-safe copy.
                self._tracked.add(staged.keys, is_file_row=staged.rows[0].is_file_row)
            self._tracked_invalid += staged.invalid
        return staged

    def chunk_keys(self, staged: StagedChunk) -> dict[str, list[list[Any]]]:
        """The batch keys of a validated chunk: ``{constraint: [[key_text, position], ...]}``,
        JSON-safe, ``key_text`` fit for a text column. ``"target"`` entries (the object a
        row names) carry a third item, the field the row named it by: pass those as
        ``fields`` to ``duplicate_errors``. Constraints come in the order their errors
        are applied: ``"target"``, then ``"unique:<fields>"`` as the serializer has them.
        """
        return {name: [list(entry) for entry in entries] for name, entries in staged.keys.items()}

    def duplicate_errors(
        self,
        constraint: str,
        positions: Iterable[int],
        is_file_row: bool = True,
        fields: Mapping[int, str] | None = None,
    ) -> dict[int, RowErrors]:
        """The errors of rows that share one key of ``constraint``: ``{position: {field:
        [messages]}}`` — exactly what ``run_batch`` gives those rows. ``positions`` are
        every row holding the key; ``fields`` the naming field of each (``"target"`` only).
        """
        if constraint == TARGET:
            usual = self.natural_key[0] if self.natural_key else "id"
            named_by = fields if fields is not None else {}
            return name_duplicates(
                positions,
                message=SAME_OBJECT,
                field_of=lambda position: named_by.get(position, usual),
                is_file_row=is_file_row,
            )
        check = self._checks.get(constraint)
        if check is None:
            known = ", ".join([TARGET, *self._checks])
            raise ValueError(f"Unknown constraint {constraint!r}; this batch has: {known}.")
        error_key = check.error_key
        return name_duplicates(
            positions,
            message=check.duplicate_message,
            field_of=lambda position: error_key,
            is_file_row=is_file_row,
        )

    def _with_tracked(self, staged: StagedChunk) -> StagedChunk:
        if not self._tracking or not self._tracked:
            return staged
        return staged.with_errors(self._tracked.errors_for(staged))

    # -- pass 2: one chunk -----------------------------------------------------------

    def write_chunk(
        self, staged: StagedChunk, in_transaction: InTransaction | None = None
    ) -> list[RowResult]:
        """Write one chunk (``atomic`` ``chunk`` or ``none``) and return its rows' results.

        The chunk is written in a transaction of its own (a savepoint when the caller
        is in one); ``in_transaction(results)`` runs inside it, just before it commits,
        so what it writes commits or rolls back with the chunk. A deadlock or
        serialization failure is retried, with backoff, ``RETRIES`` times, callback
        included; then the chunk's rows are reported as errors with the reason, and
        ``in_transaction`` sees those results in a transaction of their own.
        A dry run writes nothing; its results say what the write would do.
        """
        if self.atomic == "all":
            raise ValueError("atomic='all' writes every chunk in one transaction: use write_all().")
        staged = self._with_tracked(staged)
        if in_transaction is None and self._writes_nothing(staged):
            return self._write_chunk(staged)

        def attempt() -> list[RowResult]:
            try:
                with transaction.atomic(using=self.db):
                    results = self._write_chunk(staged)
                    if in_transaction is not None:
                        in_transaction(results)
            except _ChunkRefused as refused:
                # The chunk's transaction (its savepoint, in the caller's) rolled it back;
                # what in_transaction writes of it commits in one of its own.
                results = self._results(staged, refused.written, rolled_back=True)
                if in_transaction is not None:
                    with transaction.atomic(using=self.db):
                        in_transaction(results)
            return results

        def give_up(exc: Exception) -> list[RowResult]:
            results = self._unwritten(staged, exc)
            with transaction.atomic(using=self.db):
                if in_transaction is not None:
                    in_transaction(results)
            return results

        return retrying(attempt, give_up=give_up)

    def _writes_nothing(self, staged: StagedChunk) -> bool:
        invalid = staged.invalid
        return self.dry_run or invalid == len(staged) or bool(invalid and self.atomic == "chunk")

    def _write_chunk(self, staged: StagedChunk) -> list[RowResult]:
        if self._writes_nothing(staged):
            rolled_back = staged.invalid > 0 and self.atomic == "chunk"
            return self._results(staged, Written(), rolled_back=rolled_back)
        written, objects = self._write_rows(staged)
        if written.refused and self.atomic == "chunk":
            # The whole chunk rolls back with the transaction write_chunk opened for it:
            # no savepoint of its own around the rows (one per chunk is the statement's).
            raise _ChunkRefused(written)
        self._after_write(staged, written, objects)
        return self._results(staged, written, objects=objects)

    def _write_rows(self, staged: StagedChunk) -> tuple[Written, dict[int, Any] | None]:
        """Write the chunk's valid rows; the objects of its rows when results or
        ``after_write`` need them."""
        rows = [row for row in staged.rows if row.errors is None]
        if not (self.with_data or self.after_write is not None):
            return self.writer.write(rows), None
        before = self.objects.before_delete(rows)
        written = self.writer.write(rows)
        return written, self.objects.of(rows, written, before=before, saved=True)

    def _after_write(
        self, staged: StagedChunk, written: Written, objects: dict[int, Any] | None
    ) -> None:
        if self.after_write is None or objects is None:
            return
        for action in (CREATE, UPDATE, DELETE):
            done = [
                objects[row.index]
                for row in staged.rows
                if written.action_of(row) == action
                and row.errors is None
                and row.index not in written.refused
            ]
            if done:
                self.after_write(action, done)

    def _results(
        self,
        staged: StagedChunk,
        written: Written,
        *,
        rolled_back: bool = False,
        objects: dict[int, Any] | None = None,
    ) -> list[RowResult]:
        data = None
        if self.with_data and not rolled_back:
            if objects is None:
                ok = [r for r in staged.rows if r.errors is None]
                objects = self.objects.of(ok, written, saved=not self.dry_run)
            data = rendered(self.serializer_class, self.context, staged, written, objects)
        return chunk_results(
            staged, written, rolled_back=rolled_back, dry_run=self.dry_run, data=data
        )

    def _unwritten(self, staged: StagedChunk, exc: Exception) -> list[RowResult]:
        """The results of a chunk that lost every attempt to a deadlock or serialization
        failure: its valid rows fail with the reason."""
        reason = first_line(exc)
        message = (
            f"The database could not write this chunk ({reason}), {RETRIES + 1} times; "
            "nothing of it was written. Try again."
        )
        nfe = non_field_key()
        refused = {
            row.index: merged(None, {nfe: [message]}) for row in staged.rows if row.errors is None
        }
        return chunk_results(staged, Written(refused=refused), rolled_back=False, dry_run=False)

    # -- pass 2: every chunk in one transaction -------------------------------------

    def write_all(
        self,
        chunks: Iterable[StagedChunk],
        in_transaction: InTransaction | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Iterator[RowResult]:
        """Write every chunk (``atomic="all"``) in one transaction; any error, from
        validation or from the database, rolls it all back. Returns the results of
        every row, in order, once the transaction's fate is known.

        ``in_transaction(results)`` sees each chunk's results inside the transaction;
        if it rolls back, so does what the callback wrote, and it then sees the final
        results (errors, ``rolled_back``) in one transaction of their own.
        ``on_progress("write", rows_done)`` follows the writing.
        """
        if self.atomic != "all":
            raise ValueError(f"write_all() is for atomic='all'; this batch is {self.atomic!r}.")
        kept: Any = chunks
        own = iter(chunks) is chunks  # a one-shot iterator: its chunks are read back
        if own:
            kept = SpoolStore(self.model)
            for chunk in chunks:
                kept.append(chunk)
        try:
            failed = self._failed(kept)
            outcome = self._write_all(kept, failed, in_transaction, on_progress)
        except BaseException:
            if own:
                kept.close()
            raise
        return self._all_results(kept, outcome, in_transaction, own)

    def _failed(self, chunks: Iterable[StagedChunk]) -> bool:
        if self._tracking:
            return self._tracked_invalid > 0 or bool(self._tracked)
        return any(chunk.invalid for chunk in chunks)

    def _write_all(
        self,
        chunks: Iterable[StagedChunk],
        failed: bool,
        in_transaction: InTransaction | None,
        on_progress: ProgressCallback | None,
    ) -> tuple[str, list[Written] | Exception | None]:
        """``("committed"|"rolled_back"|"unwritten", per-chunk outcome)``."""
        if failed or self.dry_run:
            if not failed and in_transaction is not None:
                with transaction.atomic(using=self.db):
                    for chunk in chunks:
                        in_transaction(self._results(self._with_tracked(chunk), Written()))
            return ("rolled_back" if failed else "committed", None)

        reported = [0]  # a retried attempt does not report progress again

        def attempt() -> tuple[str, list[Written] | Exception | None]:
            outcomes: list[Written] = []
            with transaction.atomic(using=self.db):
                refused = False
                done = 0
                for chunk in chunks:
                    chunk = self._with_tracked(chunk)
                    # Every chunk is written even after a refusal, so the report names
                    # every row the database refuses; the transaction rolls back anyway.
                    written, objects = self._write_rows(chunk)
                    outcomes.append(written)
                    refused = refused or bool(written.refused)
                    if not refused:
                        self._after_write(chunk, written, objects)
                        if in_transaction is not None:
                            # Kept: the results if it commits, data rendered once.
                            written.results = self._results(chunk, written, objects=objects)
                            in_transaction(written.results)
                    done += len(chunk)
                    if on_progress is not None and done > reported[0]:
                        reported[0] = done
                        on_progress("write", done)
                if refused:
                    transaction.set_rollback(True, using=self.db)
            return ("rolled_back" if refused else "committed", outcomes)

        return retrying(attempt, give_up=lambda exc: ("unwritten", exc))

    def _all_results(
        self,
        chunks: Any,
        outcome: tuple[str, list[Written] | Exception | None],
        in_transaction: InTransaction | None,
        own: bool,
    ) -> Iterator[RowResult]:
        state, detail = outcome
        if state != "committed" and in_transaction is not None:
            with transaction.atomic(using=self.db):
                for n, chunk in enumerate(chunks):
                    in_transaction(self._final_results(chunk, state, detail, n))

        def results() -> Iterator[RowResult]:
            try:
                for n, chunk in enumerate(chunks):
                    yield from self._final_results(chunk, state, detail, n)
            finally:
                if own:
                    chunks.close()

        return results()

    def _final_results(
        self, chunk: StagedChunk, state: str, detail: Any, n: int
    ) -> list[RowResult]:
        chunk = self._with_tracked(chunk)
        if state == "unwritten":
            return self._unwritten(chunk, detail)
        written = detail[n] if isinstance(detail, list) else Written()
        if state == "rolled_back":
            # Rows the database refused keep their errors; every other row rolled back.
            return chunk_results(chunk, written, rolled_back=True, dry_run=self.dry_run)
        if written.results is not None:
            return written.results
        return self._results(chunk, written)
