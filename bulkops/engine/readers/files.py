"""Getting hold of the bytes: paths or file objects, their size and type."""

from __future__ import annotations

import io
import os
from typing import IO, Any

from bulkops.conf import bulkops_settings
from bulkops.exceptions import LimitExceeded, UnreadableFile

MiB = 1024 * 1024

# First bytes of the binary containers users most often give a text name to.
ZIP_MAGIC = b"PK\x03\x04"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


class FileLimitExceeded(LimitExceeded, UnreadableFile):
    """A file is over a size or row limit.

    It is both kinds of error, so a caller that stops on any unreadable file
    and one that reports limits separately both catch it.
    """

    default_code = "limit_exceeded"


class NonClosingReader(io.RawIOBase):
    """A raw binary view of a caller's file object that never closes it.

    ``io.TextIOWrapper`` closes what it wraps when it is closed or collected;
    the caller's upload must outlive the reader. It also lets Django's
    ``File`` objects, which are not ``io`` classes, sit under a buffered reader.
    """

    def __init__(self, fileobj: Any) -> None:
        super().__init__()
        self._fileobj = fileobj

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._fileobj.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        return size


def describe_size(size: int) -> str:
    if size >= MiB:
        return f"{size / MiB:.1f} MiB"
    return f"{size} bytes"


def file_size(fileobj: IO[bytes]) -> int:
    """The size of a seekable file, leaving it at its start."""
    try:
        fileobj.seek(0, os.SEEK_END)
        size = fileobj.tell()
        fileobj.seek(0)
    except (AttributeError, OSError, ValueError) as exc:
        raise UnreadableFile(
            "The file cannot be read from its start; upload it as a regular file.",
            code="not_seekable",
        ) from exc
    return size


def check_upload_size(size: int) -> None:
    limit = bulkops_settings.MAX_UPLOAD_BYTES
    if size > limit:
        raise FileLimitExceeded(
            f"The file is {describe_size(size)}, more than the limit of {describe_size(limit)}; "
            "split it into smaller files.",
            code="file_too_large",
            limit=limit,
            received=size,
        )


def open_path(path: str | os.PathLike[str]) -> IO[bytes]:
    try:
        return open(path, "rb")  # noqa: SIM115 - the RowSource closes it
    except OSError as exc:
        raise UnreadableFile(
            f"The file {os.fspath(path)!r} cannot be opened: {exc.strerror}.", code="not_found"
        ) from exc


def guess_filename(fileobj: Any) -> str | None:
    if isinstance(fileobj, str | os.PathLike):
        return os.fspath(fileobj)
    name = getattr(fileobj, "name", None)
    return name if isinstance(name, str) else None


def read_magic(fileobj: IO[bytes], size: int = 8) -> bytes:
    fileobj.seek(0)
    head = fileobj.read(size) or b""
    fileobj.seek(0)
    return bytes(head)
