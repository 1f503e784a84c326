"""RQ entry points. Each takes ids, reloads what it needs, and runs one step of a stage
(``bulkops.jobs.stages``). Safe to run twice: the second run finds the work done."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections

from . import stages


@contextmanager
def _task() -> Iterator[None]:
    try:
        yield
    finally:
        # A forked work-horse (RQ's default worker) ends with os._exit: say goodbye to
        # the database properly. BulkWorker and in-process runs keep their connection.
        from rq import get_current_job

        from .worker import KEEPS_CONNECTIONS

        if get_current_job() is not None and not KEEPS_CONNECTIONS:
            connections.close_all()


def _run(step: Callable[..., Any], *args: Any) -> None:
    with _task():
        step(*args)


def read_source(job_id: str) -> None:
    _run(stages.read_source, job_id)


def validate_chunk(job_id: str, index: int) -> None:
    _run(stages.validate_chunk, job_id, index)


def check_duplicates(job_id: str) -> None:
    _run(stages.check_duplicates, job_id)


def write_chunk(job_id: str, index: int) -> None:
    _run(stages.write_chunk, job_id, index)


def write_all(job_id: str) -> None:
    _run(stages.write_all, job_id)
