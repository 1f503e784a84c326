"""``run_batch``: rows in, one ``RowResult`` per row out, in one process.

The composition of ``Batch``'s stages for a batch run synchronously:

1. validate every chunk (``Batch.validate_chunk``, tracking duplicates across
   chunks); validated chunks wait in a ``SpoolStore`` — memory for small batches, a
   JSON-lines temporary file past that, so a million-row file never sits in memory;
2. write the chunks under the transaction mode asked for (``write_chunk`` per chunk,
   or ``write_all``), and report.

Nothing is written before every row has been validated, in every mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from rest_framework import serializers

from ..results import BatchResult, RowResult
from .batch import Batch, InTransaction, ProgressCallback, WriteHook
from .collection import fewer_young_collections, older_objects_frozen
from .store import SpoolStore


def _chunks(rows: Iterable[Any], size: int) -> Iterator[tuple[int, list[Any]]]:
    """``(index of the first row, rows)`` per chunk."""
    iterator = iter(rows)
    start = 0
    while block := list(islice(iterator, size)):
        yield start, block
        start += len(block)


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
    in_transaction: InTransaction | None = None,
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
    for what ``post_save`` receivers would do, since bulk writes send no signals;
    ``in_transaction(results)`` runs with each chunk's results inside the
    transaction that writes them (see ``Batch.write_chunk``/``write_all``);
    ``check_target(instance)`` may refuse an object an update, upsert or delete row
    names, with a message that becomes the row's error.
    """
    batch = Batch(
        serializer_class=serializer_class,
        mode=mode,
        natural_key=natural_key,
        atomic=atomic,
        chunk_size=chunk_size,
        dry_run=dry_run,
        context=context,
        queryset=queryset,
        with_data=with_data,
        after_write=after_write,
        check_target=check_target,
    )
    result = BatchResult(
        mode=mode, atomic=batch.atomic, dry_run=dry_run, keep_results=keep_results, on_row=on_row
    )

    with older_objects_frozen(), fewer_young_collections():
        return _run(
            batch,
            result,
            rows=rows,
            dry_run=dry_run,
            in_transaction=in_transaction,
            on_progress=on_progress,
        )


def _run(
    batch: Batch,
    result: BatchResult,
    *,
    rows: Iterable[Any],
    dry_run: bool,
    in_transaction: InTransaction | None,
    on_progress: ProgressCallback | None,
) -> BatchResult:
    def progress(stage: str, done: int) -> None:
        if on_progress is not None:
            on_progress(stage, done)

    store = SpoolStore(batch.model)
    try:
        done = 0
        for start, block in _chunks(rows, batch.chunk_size):
            staged = batch.validate_chunk(start, block, track_duplicates=True)
            store.append(staged)
            done += len(staged)
            progress("validate", done)
        if batch.atomic == "all":
            for row_result in batch.write_all(store, in_transaction, on_progress):
                result.add(row_result)
            return result
        done = 0
        for staged in store:
            for row_result in batch.write_chunk(staged, in_transaction):
                result.add(row_result)
            done += len(staged)
            if not dry_run:
                progress("write", done)
    finally:
        store.close()
    return result
