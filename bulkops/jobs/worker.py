"""``BulkWorker``: RQ's worker, which also heals bulkops jobs.

Use it with ``RQ = {"WORKER_CLASS": "bulkops.jobs.worker.BulkWorker"}`` (the project's
settings do) or ``manage.py rqworker --worker-class bulkops.jobs.worker.BulkWorker``.

RQ runs its maintenance (cleaning its registries) every ten minutes, between jobs. This
worker also runs ``bulkops.jobs.heal.heal`` every ``HEAL_INTERVAL`` seconds: while it
waits for a job (it waits at most that long at a time) and while its work-horse runs one.
A Redis lock lets one worker of many heal at a time. The worker process closes its
database connections after healing, so the work-horses it forks open their own.

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
from django.db import connections
from rq import Worker

from bulkops.conf import bulkops_settings

logger = logging.getLogger("bulkops.jobs")

HEAL_LOCK = "bulkops:heal-lock:{queue}"
MAX_RESTART_WAIT = 30.0  # seconds between attempts to reach Redis again, at most


class BulkWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if self.heal_interval > 0:
            kwargs.setdefault("job_monitoring_interval", max(1, int(self.heal_interval)))
        super().__init__(*args, **kwargs)
        self.last_healed = 0.0
        self.stopping = False  # a stop was asked for (SIGTERM, SIGINT)

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
        # What Django and the project loaded stays for good: the work-horses' garbage
        # collections need not walk it (as gc.freeze() in project/wsgi.py does).
        gc.freeze()
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

    def maintain_heartbeats(self, job: Any) -> None:
        try:
            super().maintain_heartbeats(job)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            # The work-horse goes on; its work is in the database, not in Redis.
            self.log.warning("Worker %s: no heartbeat to Redis (%s)", self.name, exc)
        self.heal_jobs()

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
