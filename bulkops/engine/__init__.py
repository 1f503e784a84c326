"""The bulk engine: rows in, one result per row out. No HTTP here.

from bulkops.engine import run_batch
result = run_batch(serializer_class=ProductSerializer, rows=items, mode="upsert")
"""

from .rows import SourceRow
from .run import MODES, check_options, run_batch

__all__ = ["MODES", "SourceRow", "check_options", "run_batch"]
