"""Validating the chunks of a big batch in worker processes.

DRF's per-row validation is pure Python and takes most of an import's time; on a
machine with more than one core, forked workers validate chunks side by side
while this process reads the file. Each worker validates whole chunks with the
same (forked) ``ChunkValidator`` — set-based queries on its own database
connection — and hands back the rows plus the keys of its valid rows; this
process then finds the duplicates *across* chunks with its batch-wide maps.

The same workers then write the chunks when chunks commit independently
(``atomic`` ``chunk`` or ``none``, no ``after_write`` hook, no output data), so
PostgreSQL works on two chunks at a time.

Used only where it is safe and pays: PostgreSQL (the workers need their own
connections to the same data), outside any transaction (a worker could not see
uncommitted rows), on a platform that can fork, and for batches of many chunks.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections.abc import Callable, Iterator
from typing import Any

from django.db import connections

from ..conf import bulkops_settings
from ..results import RowResult
from .validate import ChunkValidator, PreparedRow

# The forked workers find their validator here (inherited, never pickled).
_worker_validator: ChunkValidator | None = None
_worker_pack: Callable[[list[PreparedRow]], Any] | None = None
_worker_unpack: Callable[[Any], list[PreparedRow]] | None = None
_worker_writer: Any = None


def workers_for(validator: ChunkValidator) -> int:
    """How many worker processes may validate this batch: 0 means in-process."""
    wanted = bulkops_settings.VALIDATION_WORKERS
    if wanted is None:
        wanted = min(2, os.cpu_count() or 1) if (os.cpu_count() or 1) > 1 else 0
    if wanted < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return 0
    connection = connections[validator.db]
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return 0
    return wanted


def _validate_in_worker(chunk_items: tuple[int, list[tuple]]) -> tuple[bytes, int, int, tuple]:
    from .run import prepare_chunk

    validator = _worker_validator
    assert validator is not None and _worker_pack is not None
    # Duplicates inside the batch are the parent's to find, from the keys of every
    # row that got as far as having them, in row order: as in-process validation does.
    validator.batch_wide = False
    validator._targets = {}
    chunk = prepare_chunk(*chunk_items)
    validator.validate_chunk(chunk)
    keys = validator.batch_keys(chunk)
    invalid = sum(1 for row in chunk if row.errors is not None)
    # Pickled here, once: the parent spools the bytes as they are.
    pickled = pickle.dumps(_worker_pack(chunk), protocol=pickle.HIGHEST_PROTOCOL)
    return pickled, len(chunk), invalid, keys


def _write_in_worker(task: tuple[bytes, str, dict]) -> list[Any]:
    """Write one chunk in its own transaction on this worker's connection (atomic
    ``chunk``/``none`` only, where chunks commit independently); return its results."""
    from .run import results_of, write_chunk
    from .write import ChunkWriter

    global _worker_writer
    pickled, atomic, late = task
    assert _worker_validator is not None and _worker_unpack is not None
    if _worker_writer is None:
        _worker_writer = ChunkWriter(validator=_worker_validator)
    chunk = _worker_unpack(pickle.loads(pickled))
    rolled_back = write_chunk(chunk, writer=_worker_writer, atomic=atomic, late=dict(late))
    # Plain tuples travel back several times cheaper than RowResult objects.
    return [astuple(r) for r in results_of(chunk, rolled_back=rolled_back, dry_run=False)]


def astuple(result: RowResult) -> tuple:
    return (
        result.index,
        result.status,
        result.row,
        result.ref,
        result.id,
        result.data,
        result.errors,
        result.values,
    )


class ChunkWorkers:
    """A pool of forked workers: ``map`` validates chunks (yielding, in order, each chunk
    pickled and packed, its size, its number of invalid rows and the batch keys of its
    rows); ``write`` writes them when chunks commit independently."""

    def __init__(
        self,
        validator: ChunkValidator,
        workers: int,
        pack: Callable[[list[PreparedRow]], Any],
        unpack: Callable[[Any], list[PreparedRow]],
    ) -> None:
        global _worker_validator, _worker_pack, _worker_unpack
        # The children must not share this process's database sockets.
        connections.close_all()
        _worker_validator, _worker_pack, _worker_unpack = validator, pack, unpack
        context = multiprocessing.get_context("fork")
        self.pool = context.Pool(processes=workers, initializer=_close_inherited_connections)
        _worker_validator, _worker_pack, _worker_unpack = None, None, None

    def map(
        self, chunks: Iterator[tuple[int, list[tuple]]]
    ) -> Iterator[tuple[bytes, int, int, tuple]]:
        return self.pool.imap(_validate_in_worker, chunks, chunksize=1)

    def write(self, chunks: Iterator[bytes], atomic: str, late: dict) -> Iterator[list[Any]]:
        """Pass 2 for ``atomic`` ``chunk``/``none``: each chunk written by a worker, in its
        own transaction; yields each chunk's results in order."""
        return self.pool.imap(_write_in_worker, ((c, atomic, late) for c in chunks), chunksize=1)

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()

    def __enter__(self) -> ChunkWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_inherited_connections() -> None:
    # Closed in the parent before the fork; drop any handle all the same so the
    # worker opens its own connection on first use.
    for connection in connections.all(initialized_only=True):
        connection.connection = None
