"""Validated chunks between the two passes: in memory for small batches, spooled
to a temporary file for big ones, and read back one chunk ahead."""

from __future__ import annotations

import pickle
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .validate import PreparedRow


class ChunkStore:
    """Validated chunks, in order: in memory up to ``memory_rows`` rows, then on disk.

    A local temporary file lives only for one ``run_batch`` call in one process.
    ``pack``/``unpack`` turn a chunk into something cheaper to pickle and back.
    """

    def __init__(
        self,
        memory_rows: int = 10_000,
        pack: Callable[[list[Any]], Any] | None = None,
        unpack: Callable[[Any], list[Any]] | None = None,
    ) -> None:
        self.memory_rows = memory_rows
        self.pack = pack or (lambda chunk: chunk)
        self.unpack = unpack or (lambda packed: packed)
        self._held = 0
        self._memory: list[list[Any]] = []
        self._file: Any = None
        self._spooled = 0

    def append(self, chunk: list[Any]) -> None:
        if self._file is None and self._held + len(chunk) <= self.memory_rows:
            self._memory.append(chunk)
            self._held += len(chunk)
            return
        self._spool(pickle.dumps(self.pack(chunk), protocol=pickle.HIGHEST_PROTOCOL))

    def pickled(self) -> Iterator[bytes]:
        """Every chunk, packed and pickled, in order: what a worker process is handed."""
        for chunk in self._memory:
            yield pickle.dumps(self.pack(chunk), protocol=pickle.HIGHEST_PROTOCOL)
        if self._file is not None:
            self._file.seek(0)
            read = self._file.read
            for _ in range(self._spooled):
                yield read(int.from_bytes(read(8), "little"))

    @property
    def spooled(self) -> bool:
        return self._file is not None

    def append_pickled(self, data: bytes) -> None:
        """Keep a chunk that another process already packed and pickled."""
        self._spool(data)

    def _spool(self, data: bytes) -> None:
        if self._file is None:
            # Closed in close(); it lives across many appends and one read.
            self._file = tempfile.TemporaryFile(prefix="bulkops-")  # noqa: SIM115
        self._file.write(len(data).to_bytes(8, "little"))
        self._file.write(data)
        self._spooled += 1

    def __iter__(self) -> Iterator[list[Any]]:
        yield from self._memory
        if self._file is not None:
            self._file.seek(0)
            read = self._file.read
            for _ in range(self._spooled):
                size = int.from_bytes(read(8), "little")
                yield self.unpack(pickle.loads(read(size)))

    def close(self) -> None:
        self._memory = []
        if self._file is not None:
            self._file.close()
            self._file = None


class CompactRows:
    """Packs validated rows as plain tuples: a model instance is its field values.

    Pickling a model instance costs several times more than pickling its values,
    and a spooled million-row import pickles every row. Related objects cached on
    an instance are not kept, so this is used only when no output data is needed.
    """

    def __init__(self, model: type[Any]) -> None:
        self.model = model
        self.attnames = [f.attname for f in model._meta.concrete_fields]

    def pack(self, chunk: list[PreparedRow]) -> list[tuple]:
        attnames = self.attnames
        packed = []
        for r in chunk:
            obj = r.instance
            state = None
            if obj is not None:
                get = obj.__dict__.get
                state = (obj._state.adding, tuple(get(a) for a in attnames))
            packed.append(
                (
                    r.index,
                    r.row,
                    r.ref,
                    r.values,
                    r.action,
                    state,
                    r.update_fields,
                    r.errors,
                    r.validated,
                )
            )
        return packed

    def unpack(self, packed: list[tuple]) -> list[PreparedRow]:
        model = self.model
        rows = []
        for index, row, ref, values, action, state, update_fields, errors, validated in packed:
            obj = None
            if state is not None:
                obj = model(*state[1])
                obj._state.adding = state[0]
            rows.append(
                PreparedRow(index, row, ref, values, action, obj, update_fields, errors, validated)
            )
        return rows


def prefetched(
    chunks: Iterable[list[PreparedRow]], prepare: Callable[[list[PreparedRow]], None]
) -> Iterator[list[PreparedRow]]:
    """The chunks, read back and prepared by a thread one step ahead.

    While this thread waits on the database for one chunk (psycopg lets go of
    the GIL), the helper unpickles the next chunk from the spool and builds its
    COPY rows: work that touches no database connection.
    """
    ahead: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for chunk in chunks:
                prepare(chunk)
                while not stop.is_set():
                    try:
                        ahead.put((None, chunk), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ahead.put((None, done))
        except BaseException as exc:  # handed to the consumer, raised there
            ahead.put((exc, None))

    thread = threading.Thread(target=produce, name="bulkops-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            error, chunk = ahead.get()
            if error is not None:
                raise error
            if chunk is done:
                return
            yield chunk
    finally:
        stop.set()
        thread.join()
