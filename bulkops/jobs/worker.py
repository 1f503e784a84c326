"""``BulkWorker``: RQ's worker, which also heals bulkops jobs.

Use it with ``RQ = {"WORKER_CLASS": "bulkops.jobs.worker.BulkWorker"}`` (the project's
settings do) or ``manage.py rqworker --worker-class bulkops.jobs.worker.BulkWorker``.

RQ runs its maintenance (cleaning its registries) every ten minutes, between jobs. This
worker also runs ``bulkops.jobs.heal.heal`` every ``HEAL_INTERVAL`` seconds: while it
waits for a job (it waits at most that long at a time) and while its work-horse runs one.
A Redis lock lets one worker of many heal at a time. The worker process closes its
database connections after healing, so the work-horses it forks open their own.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import connections
from rq import Worker

from bulkops.conf import bulkops_settings

logger = logging.getLogger("bulkops.jobs")

HEAL_LOCK = "bulkops:heal-lock:{queue}"


class BulkWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("job_monitoring_interval", max(1, int(self.heal_interval)))
        super().__init__(*args, **kwargs)
        self.last_healed = 0.0

    @property
    def heal_interval(self) -> float:
        return float(bulkops_settings.HEAL_INTERVAL)

    @property
    def dequeue_timeout(self) -> int:
        # Wake up at least once per heal interval even when no job comes.
        return max(1, min(super().dequeue_timeout, int(self.heal_interval)))

    @property
    def heal_due(self) -> bool:
        return time.monotonic() - self.last_healed >= self.heal_interval

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return super().should_run_maintenance_tasks or self.heal_due

    def run_maintenance_tasks(self) -> None:
        if super().should_run_maintenance_tasks:
            super().run_maintenance_tasks()
        self.heal_jobs()

    def maintain_heartbeats(self, job: Any) -> None:
        super().maintain_heartbeats(job)
        self.heal_jobs()

    def heal_jobs(self) -> None:
        """Heal, unless healed recently here or another worker holds the heal lock."""
        if not self.heal_due:
            return
        self.last_healed = time.monotonic()
        ttl = max(1, int(self.heal_interval * 1000 * 0.9))
        lock = HEAL_LOCK.format(queue=bulkops_settings.QUEUE)
        if not self.connection.set(lock, self.name, nx=True, px=ttl):
            return
        from .heal import heal

        try:
            heal()
        except Exception:
            logger.exception("bulkops heal failed; trying again in %s s", self.heal_interval)
        finally:
            connections.close_all()
