"""Real RQ workers for the job tests: ``manage.py rqworker`` subprocesses with
``BulkWorker``, on a queue of the test's own, against the test database.

Tests that start workers need PostgreSQL (SQLite's test database lives in memory, where
no other process can reach it) and ``django_db(transaction=True)``, so that what the test
writes is committed for the workers to see.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
import redis
from django.db import connection

from bulkops.jobs.models import BulkJob

ROOT = Path(__file__).resolve().parents[2]
#: Workers in tests notice dead ones within seconds.
FAST_HEALING = {"STALE_AFTER": 3, "HEAL_INTERVAL": 1, "HEARTBEAT_INTERVAL": 0.5}

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="workers in other processes need a database they can reach (PostgreSQL)",
)


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return Path(settings.MEDIA_ROOT)


@pytest.fixture
def in_process(settings):
    """Jobs run in this process (no Redis), as ``BULKOPS_RQ_SYNC=1`` makes them."""
    queues = {name: {**config, "ASYNC": False} for name, config in settings.RQ_QUEUES.items()}
    settings.RQ_QUEUES = queues


def _clean(client: redis.Redis, queue: str) -> None:
    """Delete the queue, its registries and the records of the tasks they name."""
    keys = [k.decode() for k in client.scan_iter(f"rq:*:{queue}", count=1000)]
    tasks: set[str] = set()
    for key in keys:
        kind = client.type(key).decode()
        if kind == "list":
            tasks.update(t.decode() for t in client.lrange(key, 0, -1))
        elif kind == "zset":
            tasks.update(t.decode().split(":")[0] for t in client.zrange(key, 0, -1))
    keys += [f"rq:job:{task}" for task in tasks] + [f"bulkops:heal-lock:{queue}"]
    client.delete(*keys)


@pytest.fixture
def rq_queue(settings):
    """A queue of this test's own (so test runs sharing a Redis database stay apart),
    emptied before and after."""
    name = f"bulkops-test-{uuid.uuid4().hex[:8]}"
    url = settings.RQ_QUEUES["bulkops"]["URL"]
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, name: {"URL": url, "DEFAULT_TIMEOUT": 600}}
    settings.BULKOPS = {**settings.BULKOPS, "QUEUE": name}
    client = redis.Redis.from_url(url)
    _clean(client, name)
    yield name
    _clean(client, name)
    client.close()


class Worker:
    """One ``rqworker`` process (and the work-horse it forks)."""

    def __init__(self, proc: subprocess.Popen, log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def processes(self) -> list[psutil.Process]:
        try:
            parent = psutil.Process(self.proc.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def horse_running(self) -> bool:
        return len(self.processes()) > 1

    def kill(self) -> None:
        """SIGKILL the worker and its work-horse at once: a machine that died."""
        for process in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_worker(rq_queue, settings, tmp_path, media_root):
    """``start_worker(burst=False, bulkops=None, cwd=None, env=None) -> Worker``."""
    workers: list[Worker] = []

    def start(
        *,
        burst: bool = False,
        bulkops: dict | None = None,
        cwd: Path | None = None,
        env: dict | None = None,
        redis_url: str | None = None,
    ) -> Worker:
        db = connection.settings_dict
        merged = {**settings.BULKOPS, **FAST_HEALING, **(bulkops or {}), "QUEUE": rq_queue}
        environ = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.jobs.worker_settings",
            "BULKOPS_TEST_DB_NAME": db["NAME"],
            "BULKOPS_TEST_SETTINGS": json.dumps(merged),
            "BULKOPS_TEST_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "BULKOPS_TEST_QUEUE": rq_queue,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        if redis_url:
            environ["REDIS_URL"] = redis_url
        args = [sys.executable, str(ROOT / "manage.py"), "rqworker", rq_queue, "--worker-ttl", "30"]
        if burst:
            args.append("--burst")
        log = tmp_path / f"worker-{len(workers)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                args,
                cwd=cwd or ROOT,
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                process_group=0,
            )
        worker = Worker(proc, log)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.proc.poll() is None:
            worker.kill()


def wait_for(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def wait_job(job_id, *, statuses=BulkJob.FINISHED | {BulkJob.VALIDATED}, timeout: float = 60):
    """The job, reloaded once its status is one of ``statuses``."""

    def reached():
        job = BulkJob.objects.get(pk=job_id)
        return job if job.status in statuses else None

    return wait_for(reached, timeout=timeout, what=f"job {job_id} to reach {sorted(statuses)}")
