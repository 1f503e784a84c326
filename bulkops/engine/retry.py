"""Work that lost a race to another transaction runs again.

PostgreSQL ends one of two deadlocked transactions, and one of two serializable
transactions that conflict; the same work usually succeeds when run again. Django
reports both as ``OperationalError`` caused by psycopg's ``DeadlockDetected`` /
``SerializationFailure``; their SQLSTATE codes say which.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger("bulkops.engine")

T = TypeVar("T")

TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock, serialization failure
RETRIES = 3  # runs after the first
BACKOFF_SECONDS = 0.05  # doubled each run, with jitter


def is_transient(exc: BaseException) -> bool:
    """A deadlock or serialization failure: the same work may succeed if run again."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "sqlstate", None) in TRANSIENT_SQLSTATES:
            return True
        seen = seen.__cause__
    return False


def retrying(work: Callable[[], T], *, give_up: Callable[[Exception], T]) -> T:
    """``work()``, run again after a transient failure up to ``RETRIES`` times with
    backoff; then ``give_up(the last failure)``. Other exceptions propagate."""
    for attempt in range(RETRIES + 1):
        try:
            return work()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt == RETRIES:
                return give_up(exc)
            delay = BACKOFF_SECONDS * 2**attempt * (0.5 + random.random())
            logger.info("bulkops: %s; running it again in %.2f s", first_line(exc), delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
