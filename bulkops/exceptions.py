"""Errors that stop a whole operation. A failing *row* is never an exception: it is
a ``RowResult`` with status ``error`` (see ``bulkops.results``)."""

from typing import Any


class BulkOpsError(Exception):
    """An operation could not run at all. ``message`` is a sentence for the user,
    ``code`` a stable identifier for programs, ``extra`` any details worth returning."""

    default_code = "bulkops_error"

    def __init__(self, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.extra = extra

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class InvalidOptions(BulkOpsError):
    """The options given to the engine are not usable (unknown mode, bad chunk size...)."""

    default_code = "invalid_options"


class UnreadableFile(BulkOpsError):
    """A file could not be read as rows: wrong format, broken, hostile or too big."""

    default_code = "unreadable_file"


class MissingColumns(UnreadableFile):
    """A required column is absent from the file's header."""

    default_code = "missing_columns"


class LimitExceeded(BulkOpsError):
    """More rows, items or bytes than the settings allow."""

    default_code = "limit_exceeded"
