"""``BulkWorker``: RQ's worker, running tasks in its own process, and healing bulkops jobs.

Use it with ``RQ = {"WORKER_CLASS": "bulkops.jobs.worker.BulkWorker"}`` (the project's
settings do) or ``manage.py rqworker --worker-class bulkops.jobs.worker.BulkWorker``.

A bulkops task is one chunk: tens of milliseconds of work. RQ's default worker forks a
work-horse for every task, and the horse opens its own database connection: that cost as
much again as the chunk (a 20,000-row job on one worker: 3.9 s forking, 2.7 s without).
So this worker runs each task in its own process, as RQ's ``SimpleWorker`` does, and keeps
its database connection from task to task (closed when broken or older than
``CONN_MAX_AGE``, as Django does between requests). A task that kills the process kills the
worker: healing (below) gives its chunk to another worker, which is what happens when a
machine dies anyway; RQ's job timeout still applies (an alarm signal in the process).

RQ runs its maintenance (cleaning its registries) every ten minutes, between jobs. This
worker also runs ``bulkops.jobs.heal.heal`` every ``HEAL_INTERVAL`` seconds between tasks
and while it waits for one (it waits at most that long at a time). A Redis lock lets one
worker of many heal at a time.

RQ's work loop ends when Redis goes away in the middle of it (a restart, a failover).
This worker waits for Redis to answer again and starts the loop anew, so a Redis
restart needs no operator: healing then sends the tasks the restart lost.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from typing import Any

import redis
from django.db import close_old_connections, connections
from rq.worker import SimpleWorker

from bulkops.conf import bulkops_settings
from bulkops.engine.collection import fewer_young_collections

logger = logging.getLogger("bulkops.jobs")

HEAL_LOCK = "bulkops:heal-lock:{queue}"
MAX_RESTART_WAIT = 30.0  # seconds between attempts to reach Redis again, at most


#: True in a process where a BulkWorker runs tasks: their database connections outlive
#: them (``bulkops.jobs.tasks`` closes them after each task in a forked work-horse).
KEEPS_CONNECTIONS = False


class BulkWorker(SimpleWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_healed = 0.0
        self.stopping = False  # a stop was asked for (SIGTERM, SIGINT)

    def execute_job(self, job: Any, queue: Any) -> None:
        # As Django does around a request: a connection that broke (or aged past
        # CONN_MAX_AGE) in one task is not handed to the next.
        close_old_connections()
        try:
            super().execute_job(job, queue)
        finally:
            close_old_connections()

    #: RQ renews a worker's record before and after every dequeue (two Redis calls
    #: each), i.e. four times per task; the record lives ``worker_ttl`` (minutes), and
    #: dashboards read its last beat to the second. Once a second is plenty.
    HEARTBEAT_EVERY = 1.0

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        beaten = getattr(self, "_beaten_at", None)
        recent = beaten is not None and time.monotonic() - beaten < self.HEARTBEAT_EVERY
        if recent and timeout is None and pipeline is None:
            return
        super().heartbeat(timeout, pipeline)
        self._beaten_at = time.monotonic()

    def request_stop(self, signum: Any, frame: Any) -> None:
        self.stopping = True
        super().request_stop(signum, frame)

    @property
    def heal_interval(self) -> float:
        """Seconds between heals; 0 (or None) turns healing off in this worker."""
        return float(bulkops_settings.HEAL_INTERVAL or 0)

    @property
    def dequeue_timeout(self) -> int:
        # Wake up at least once per heal interval even when no job comes.
        if self.heal_interval <= 0:
            return super().dequeue_timeout
        return max(1, min(super().dequeue_timeout, int(self.heal_interval)))

    @property
    def heal_due(self) -> bool:
        interval = self.heal_interval
        return interval > 0 and time.monotonic() - self.last_healed >= interval

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return super().should_run_maintenance_tasks or self.heal_due

    def run_maintenance_tasks(self) -> None:
        if super().should_run_maintenance_tasks:
            super().run_maintenance_tasks()
        self.heal_jobs()

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """RQ's work loop; started again (after Redis answers) when it ended on its own."""
        global KEEPS_CONNECTIONS
        KEEPS_CONNECTIONS = True  # set here: a web process may make workers only to list them
        # What Django and the project loaded stays for good: garbage collections
        # during tasks need not walk it (as gc.freeze() in project/wsgi.py does).
        gc.freeze()
        # Tasks make a chunk's worth of objects and free them by reference counting: a
        # young collection every few hundred rows would only move them to older
        # generations to be walked again (as run_batch does, bulkops.engine.collection).
        with fewer_young_collections():
            return self._work_loop(*args, **kwargs)

    def _work_loop(self, *args: Any, **kwargs: Any) -> bool:
        burst = kwargs.get("burst", args[0] if args else False)
        worked = False
        wait = 1.0
        while True:
            try:
                worked = super().work(*args, **kwargs) or worked
            except redis.exceptions.RedisError as exc:
                self.log.warning("Worker %s: lost Redis (%s)", self.name, exc)
            limited = kwargs.get("max_jobs") or kwargs.get("max_idle_time")
            if burst or limited or self.stopping or self._stop_requested:
                return worked
            self.log.warning("Worker %s: the work loop ended; starting it again", self.name)
            with contextlib.suppress(Exception):
                self.unsubscribe()
            wait = self._wait_for_redis(wait)

    def _wait_for_redis(self, wait: float) -> float:
        while not self.stopping:
            try:
                self.connection.ping()
                self.connection.delete(self.key)  # our own record, if it outlived the loop
                return 1.0
            except redis.exceptions.RedisError:
                time.sleep(wait)
                wait = min(wait * 2, MAX_RESTART_WAIT)
        return wait

    def heal_jobs(self) -> None:
        """Heal, unless healed recently here or another worker holds the heal lock."""
        if not self.heal_due:
            return
        self.last_healed = time.monotonic()
        ttl = max(1, int(self.heal_interval * 1000 * 0.9))
        lock = HEAL_LOCK.format(queue=bulkops_settings.QUEUE)
        try:
            if not self.connection.set(lock, self.name, nx=True, px=ttl):
                return
        except redis.exceptions.RedisError:
            return
        from .heal import heal

        try:
            heal()
        except Exception:
            logger.exception("bulkops heal failed; trying again in %s s", self.heal_interval)
        finally:
            connections.close_all()
