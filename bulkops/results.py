"""Per-row outcomes. A row that fails is a value here, never an exception.

``RowResult`` is one input row's outcome; ``BatchResult`` gathers them with the
counts every surface reports (REST response, job progress, command summary).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

CREATED = "created"
UPDATED = "updated"
DELETED = "deleted"
ERROR = "error"
ROLLED_BACK = "rolled_back"
REPLAYED = "replayed"

SUCCESS_STATUSES = frozenset({CREATED, UPDATED, DELETED, REPLAYED})
STATUSES = (CREATED, UPDATED, DELETED, ERROR, ROLLED_BACK, REPLAYED)


@dataclass(slots=True)
class RowResult:
    """The outcome of one input row.

    ``index`` is the 0-based position in the input, ``row`` the spreadsheet row
    number (header = row 1) for file rows, ``ref`` the client's ``_ref``.
    ``values`` are the row as it was given, kept for error files.
    """

    index: int
    status: str
    row: int | None = None
    ref: Any = None
    id: Any = None
    data: dict[str, Any] | None = None
    errors: dict[str, Any] | None = None
    values: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS_STATUSES

    def as_dict(self) -> dict[str, Any]:
        """The item shape of CONTRACT §3."""
        out: dict[str, Any] = {"index": self.index}
        if self.row is not None:
            out["row"] = self.row
        if self.ref is not None:
            out["ref"] = self.ref
        out["status"] = self.status
        if self.errors is not None:
            out["errors"] = self.errors
        else:
            if self.id is not None:
                out["id"] = self.id
            if self.data is not None:
                out["data"] = self.data
        return out


@dataclass
class BatchResult:
    """Counts for every row and, unless ``keep_results`` is off, every ``RowResult``.

    A caller that streams (a million-row import) passes ``on_row`` to see each
    result as it is decided and ``keep_results=False`` so memory stays flat.
    """

    mode: str
    atomic: str
    dry_run: bool = False
    keep_results: bool = True
    on_row: Callable[[RowResult], None] | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    _results: list[RowResult] = field(default_factory=list)
    _sorted: bool = True

    def add(self, result: RowResult) -> None:
        self.counts[result.status] += 1
        if self.keep_results:
            if self._results and result.index < self._results[-1].index:
                self._sorted = False
            self._results.append(result)
        if self.on_row is not None:
            self.on_row(result)

    @property
    def results(self) -> list[RowResult]:
        """Every kept result, in input order."""
        if not self._sorted:
            self._results.sort(key=lambda r: r.index)
            self._sorted = True
        return self._results

    def __iter__(self) -> Iterator[RowResult]:
        return iter(self.results)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def succeeded(self) -> int:
        return sum(self.counts[s] for s in SUCCESS_STATUSES)

    @property
    def failed(self) -> int:
        return self.total - self.succeeded

    @property
    def status(self) -> str:
        """``completed`` when every row succeeded, ``failed`` when none did, else ``partial``."""
        if self.failed == 0:
            return "completed"
        if self.succeeded == 0:
            return "failed"
        return "partial"

    @property
    def summary(self) -> dict[str, int]:
        return {
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "created": self.counts[CREATED],
            "updated": self.counts[UPDATED],
            "deleted": self.counts[DELETED],
            "rolled_back": self.counts[ROLLED_BACK],
            "replayed": self.counts[REPLAYED],
        }

    def as_dict(self) -> dict[str, Any]:
        """The response body of CONTRACT §3."""
        return {
            "status": self.status,
            "atomic": self.atomic,
            "dry_run": self.dry_run,
            "summary": self.summary,
            "results": [r.as_dict() for r in self.results],
        }
