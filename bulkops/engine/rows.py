"""What flows into the engine: one ``SourceRow`` per input row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class SourceRow:
    """One row to validate and write.

    ``values`` maps serializer field names to raw values (cells already
    normalised by a reader); ``row`` is the spreadsheet row number the user sees
    (header = row 1), ``None`` for API items; ``ref`` is echoed in the result;
    ``errors``, when set by a reader (a ragged row, say), makes the row fail with
    them without being validated.
    """

    values: Any
    row: int | None = None
    ref: Any = None
    errors: dict[str, list[str]] | None = None
