"""Handing a job's tasks to RQ: on commit, in one pipeline, under ids that say what they do.

Every task is one function of ``bulkops.jobs.tasks`` with the job's id (and a chunk
index), enqueued as ``bulkops_<job>_<stage>_<chunk>`` (RQ allows only letters, digits,
``_`` and ``-`` in an id, so not the colons of DESIGN.md). Sending a task whose id is still
waiting in the queue does nothing, so healing may send it again freely; a task that does
run twice finds its work done in the database and returns (see ``lease``).

Without an asynchronous queue (``RQ_QUEUES[...]["ASYNC"] = False``, which
``BULKOPS_RQ_SYNC=1`` sets), tasks run in this process, one after the other, once the
transaction that sent them commits: no Redis is needed.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import router, transaction
from django.utils.module_loading import import_string

from bulkops.conf import bulkops_settings

logger = logging.getLogger("bulkops.jobs")

PREFIX = "bulkops"
#: RQ statuses of a task that is still to run: sending it again would run it twice.
WAITING = frozenset({"queued", "deferred", "scheduled"})
# Finished tasks need no record (the database has the outcome); failed ones stay a week
# in RQ's failed registry for the dashboard.
RESULT_TTL = 60
FAILURE_TTL = 7 * 86_400
# Job-wide tasks (reading a file, writing everything in one transaction) may be long.
LONG_TIMEOUT = 24 * 3600


@dataclass(frozen=True)
class Task:
    """One call of a ``bulkops.jobs.tasks`` function for one job (and chunk)."""

    name: str  # the function in bulkops.jobs.tasks
    job_id: str
    stage: str
    chunk: int | None = None  # None: a task of the whole job
    kwargs: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        return task_id(self.job_id, self.stage, self.chunk)

    @property
    def path(self) -> str:
        return f"bulkops.jobs.tasks.{self.name}"

    @property
    def args(self) -> tuple:
        return (self.job_id,) if self.chunk is None else (self.job_id, self.chunk)

    def run(self) -> None:
        import_string(self.path)(*self.args, **self.kwargs)


def task_id(job_id: Any, stage: str, chunk: int | None = None) -> str:
    """``bulkops_<job>_<stage>_<chunk index>``, or ``..._<stage>_all`` for a job-wide task."""
    return f"{PREFIX}_{job_id}_{stage}_{'all' if chunk is None else chunk}"


_queues: dict[tuple, Any] = {}


def get_queue() -> Any:
    """The ``BULKOPS["QUEUE"]`` queue; its Redis connection pool is kept for the process."""
    import django_rq
    from django_rq.settings import QUEUES

    name = bulkops_settings.QUEUE
    key = (name, repr(sorted(QUEUES.get(name, {}).items())))
    queue = _queues.get(key)
    if queue is None:
        queue = _queues[key] = django_rq.get_queue(name)
    return queue


def runs_in_process() -> bool:
    """True when tasks run in the sending process (no asynchronous queue configured)."""
    from django_rq.settings import QUEUES

    name = bulkops_settings.QUEUE
    if name not in QUEUES:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"BULKOPS['QUEUE'] is {name!r}, which RQ_QUEUES does not define; "
            f"defined queues: {', '.join(sorted(QUEUES)) or 'none'}."
        )
    return not QUEUES[name].get("ASYNC", True)


def dispatch(tasks: Iterable[Task], *, force: bool = False) -> None:
    """Send ``tasks`` once the current transaction commits (at once outside one).

    ``force`` also replaces tasks RQ shows as started (healing decided their worker is
    dead); tasks waiting in the queue are never sent twice.
    """
    from .models import BulkJob

    tasks = list(tasks)
    if not tasks:
        return
    using = router.db_for_write(BulkJob)
    transaction.on_commit(lambda: send(tasks, force=force), using=using)


def send(tasks: list[Task], *, force: bool = False) -> None:
    if runs_in_process():
        _run_here(tasks)
        return
    queue = get_queue()
    statuses = task_statuses([t.id for t in tasks], queue=queue)
    stale: list[str] = []
    fresh = []
    for task in tasks:
        status = statuses.get(task.id)
        if status in WAITING or (status == "started" and not force):
            continue
        if status is not None:
            stale.append(task.id)
        fresh.append(task)
    if not fresh:
        return
    connection = queue.connection
    with connection.pipeline() as pipe:
        if stale:
            _forget(stale, queue, pipe)
        queue.enqueue_many(
            [
                queue.prepare_data(
                    task.path,
                    args=task.args,
                    kwargs=task.kwargs,
                    job_id=task.id,
                    description=f"bulkops {task.stage} {task.job_id} {task.chunk}",
                    timeout=LONG_TIMEOUT if task.chunk is None else None,
                    result_ttl=RESULT_TTL,
                    failure_ttl=FAILURE_TTL,
                )
                for task in fresh
            ],
            pipeline=pipe,
        )
        pipe.execute()


def task_statuses(ids: list[str], *, queue: Any = None) -> dict[str, str]:
    """RQ's status of each task id it still knows (one round trip)."""
    if not ids:
        return {}
    from rq.job import Job

    queue = queue or get_queue()
    with queue.connection.pipeline() as pipe:
        for task in ids:
            pipe.hget(Job.key_for(task), "status")
        values = pipe.execute()
    return {
        task: value.decode() if isinstance(value, bytes) else value
        for task, value in zip(ids, values, strict=True)
        if value is not None
    }


def _forget(ids: list[str], queue: Any, pipe: Any) -> None:
    """Drop RQ's record of finished, failed or dead tasks so their ids can be sent again."""
    from rq.job import Job
    from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

    for registry in (
        FailedJobRegistry(queue=queue),
        FinishedJobRegistry(queue=queue),
    ):
        pipe.zrem(registry.key, *ids)
    started = StartedJobRegistry(queue=queue)
    # Started entries are "<job id>:<execution id>"; expired ones go with RQ's own cleanup.
    for member in queue.connection.zrange(started.key, 0, -1):
        text = member.decode() if isinstance(member, bytes) else member
        if text.rsplit(":", 1)[0] in ids:
            pipe.zrem(started.key, member)
    for task in ids:
        pipe.lrem(queue.key, 0, task)
        pipe.delete(Job.key_for(task))


# -- in-process --------------------------------------------------------------------------

_local = threading.local()


def _run_here(tasks: list[Task]) -> None:
    """Run tasks here, in order. Tasks sent by a running task join the line instead of
    nesting, so a job of a thousand chunks never recurses."""
    line: deque[Task] | None = getattr(_local, "line", None)
    if line is not None:
        line.extend(tasks)
        return
    _local.line = line = deque(tasks)
    try:
        while line:
            task = line.popleft()
            try:
                task.run()
            except Exception:
                # The task recorded what it could on the job; resume_jobs() takes it up.
                logger.exception("bulkops task %s failed", task.id)
    finally:
        _local.line = None
