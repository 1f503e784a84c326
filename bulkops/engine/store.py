"""Where validated chunks wait for pass 2.

A store takes ``append(chunk)``, gives its chunks back in order when iterated (as
often as asked), and lets go of them on ``close()``. ``run_batch`` uses a
``SpoolStore``: small batches stay in memory, the rest of a big one goes to a
JSON-lines temporary file, so a million-row file never sits in memory. Jobs keep
their chunks in the database, behind the same three calls.
"""

from __future__ import annotations

import gc
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Protocol

from django.db import models

from .staged import StagedChunk


@contextmanager
def _no_collection() -> Iterator[None]:
    """No garbage collection while a chunk is encoded or decoded: that makes thousands
    of objects and no cycle, and a collection would walk every object the process
    holds, every few hundred rows."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class ChunkStore(Protocol):
    def append(self, chunk: StagedChunk) -> None: ...

    def __iter__(self) -> Iterator[StagedChunk]: ...

    def close(self) -> None: ...


class MemoryStore:
    """Chunks as they are, objects and all."""

    def __init__(self) -> None:
        self.chunks: list[StagedChunk] = []

    def append(self, chunk: StagedChunk) -> None:
        self.chunks.append(chunk)

    def __iter__(self) -> Iterator[StagedChunk]:
        return iter(self.chunks)

    def close(self) -> None:
        self.chunks = []


class JsonLinesStore:
    """Chunks as JSON lines (``StagedChunk.to_json``) in a temporary file, read back per
    field of ``model``. The file lives in this process, for one batch."""

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        self._file: IO[bytes] | None = None

    def append(self, chunk: StagedChunk) -> None:
        if self._file is None:
            # Closed in close(); it lives across many appends and reads.
            self._file = tempfile.TemporaryFile(prefix="bulkops-")  # noqa: SIM115
        self._file.seek(0, 2)
        with _no_collection():
            # json.dumps writes ASCII (non-ASCII text as \u escapes): one line per chunk.
            line = json.dumps(chunk.to_json(), separators=(",", ":")).encode("ascii")
        self._file.write(line)
        self._file.write(b"\n")

    def __iter__(self) -> Iterator[StagedChunk]:
        if self._file is None:
            return
        file = self._file
        model = self.model
        from_json = StagedChunk.from_json
        position = 0
        while True:
            file.seek(position)  # each iteration reads at its own place
            line = file.readline()
            if not line:
                return
            position = file.tell()
            with _no_collection():
                chunk = from_json(json.loads(line), model=model)
            yield chunk

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class SpoolStore:
    """In memory up to ``memory_rows`` rows, then every later chunk in a ``JsonLinesStore``."""

    def __init__(self, model: type[models.Model], memory_rows: int = 10_000) -> None:
        self.memory_rows = memory_rows
        self.memory = MemoryStore()
        self.file = JsonLinesStore(model)
        self._held = 0
        self.spooled = 0

    def append(self, chunk: StagedChunk) -> None:
        if not self.spooled and self._held + len(chunk) <= self.memory_rows:
            self.memory.append(chunk)
            self._held += len(chunk)
            return
        self.file.append(chunk)
        self.spooled += 1

    def __iter__(self) -> Iterator[StagedChunk]:
        yield from self.memory
        if self.spooled:
            yield from self.file

    def close(self) -> None:
        self.memory.close()
        self.file.close()
