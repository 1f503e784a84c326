"""The bulk engine: rows in, one result per row out. No HTTP here.

from bulkops.engine import run_batch
result = run_batch(serializer_class=ProductSerializer, rows=items, mode="upsert")

``Batch`` offers the same work stage by stage (validate a chunk, write a chunk),
for jobs that spread a batch over workers.
"""

from .batch import Batch
from .options import MODES, check_options, natural_key_of
from .rows import SourceRow
from .run import run_batch
from .staged import StagedChunk, StagedRow
from .store import ChunkStore, JsonLinesStore, MemoryStore, SpoolStore

__all__ = [
    "MODES",
    "Batch",
    "ChunkStore",
    "JsonLinesStore",
    "MemoryStore",
    "SourceRow",
    "SpoolStore",
    "StagedChunk",
    "StagedRow",
    "check_options",
    "natural_key_of",
    "run_batch",
]
