"""Jobs on real RQ workers (``manage.py rqworker`` subprocesses), real Redis and PostgreSQL:
workers killed, Redis restarted, connections dropped — every row still applied once.

Orders have no natural key: a chunk written twice would show as extra orders. To catch
a worker in the middle of a chunk, the test holds a lock on the order table: the
worker's INSERT waits inside its chunk's transaction until the test lets go.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import signal
import socket
import subprocess
import time

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum
from rq import Worker as RQWorker
from rq.job import Job as RQJob

from bulkops.jobs import services
from bulkops.jobs.models import BulkChunk, BulkJob
from bulkops.jobs.queue import get_queue, send, task_id
from bulkops.jobs.stages import write_tasks
from project.catalog.models import Order, Product
from tests.jobs.conftest import FAST_HEALING, needs_postgres, wait_for, wait_job
from tests.jobs.data import (
    ORDER_HEADER,
    PRODUCT_HEADER,
    catalog,
    order_rows,
    product_rows,
    write_csv,
)

pytestmark = [needs_postgres, pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def ann():
    return get_user_model().objects.create_user("ann")


@pytest.fixture(autouse=True)
def _fast_healing(settings):
    # resume_jobs() in this process judges leases as the workers do.
    settings.BULKOPS = {**settings.BULKOPS, **FAST_HEALING}


def start_orders(user, tmp_path, count, **options):
    catalog()
    path = write_csv(tmp_path / "orders.csv", ORDER_HEADER, order_rows(count))
    options.setdefault("chunk_size", 1000)
    options.setdefault("atomic", "chunk")
    return services.start_file_job(
        user=user,
        model="catalog.order",
        file=ContentFile(path.read_bytes(), name="orders.csv"),
        mode="create",
        source="command",
        **options,
    )


def connect() -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"] or 5432
    )


@contextlib.contextmanager
def table_locked(table: str = "catalog_order"):
    """Writers of ``table`` wait (inside their transactions) until the block ends."""
    with connect() as blocker:
        blocker.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        yield blocker
        blocker.rollback()


def waiting_backends() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        return [row[0] for row in cursor.fetchall()]


def in_flight(job) -> BulkChunk | None:
    """A chunk being written right now (its worker waits on the lock)."""
    if not waiting_backends():
        return None
    return job.chunks.filter(state=BulkChunk.VALIDATED).exclude(claimed_by="").first()


def reach_write(job, timeout=90):
    return wait_for(
        lambda: BulkJob.objects.filter(pk=job.pk, stage=BulkJob.STAGE_WRITE).first(),
        timeout=timeout,
        what="the write stage",
    )


def holder_pid(chunk: BulkChunk) -> int:
    return int(chunk.claimed_by.split(":")[1])


def worker_running(workers, pid):
    return next(w for w in workers if pid in {p.pid for p in w.processes()})


def assert_written_once(job, count):
    job = wait_job(job.pk, timeout=120)
    assert job.status == BulkJob.COMPLETED, (job.status, job.error)
    assert Order.objects.count() == count
    chunks = job.chunks.all()
    assert all(c.state == BulkChunk.DONE for c in chunks)
    assert chunks.aggregate(total=Sum("created"))["total"] == count
    assert all(len(c.outcome["s"]) == c.size == len(c.outcome["ids"]) for c in chunks)
    ids = [i for c in chunks for i in c.outcome["ids"]]
    assert sorted(ids) == sorted(Order.objects.values_list("pk", flat=True))  # each row once
    assert job.created == count and not job.row_errors.exists()
    return job


def test_a_killed_worker_s_chunks_are_finished_by_the_other_worker(tmp_path, ann, start_worker):
    workers = [start_worker(), start_worker()]
    job = start_orders(ann, tmp_path, 20_000)
    reach_write(job)
    with table_locked():
        chunk = wait_for(lambda: in_flight(job), timeout=30, what="a chunk in flight")
        victim = worker_running(workers, holder_pid(chunk))
        victim.kill()
    job = assert_written_once(job, 20_000)
    assert job.chunks.get(index=chunk.index).attempts >= 2


def resumed() -> str | None:
    """What `bulk_jobs resume` printed, if it sent tasks again."""
    out = io.StringIO()
    call_command("bulk_jobs", "resume", stdout=out)
    return out.getvalue() if out.getvalue().startswith("Sent") else None


def test_a_killed_worker_s_job_is_finished_through_resume(tmp_path, ann, start_worker):
    first = start_worker()
    job = start_orders(ann, tmp_path, 20_000)
    reach_write(job)
    with table_locked():
        chunk = wait_for(lambda: in_flight(job), timeout=30, what="a chunk in flight")
        first.kill()
    # No worker heals now: `bulk_jobs resume` sends the dead worker's chunk again once its
    # lease is stale (before that it says a live worker holds it).
    said = wait_for(resumed, timeout=30, what="bulk_jobs resume to send a task")
    assert str(job.pk) in said
    second = start_worker(burst=True, bulkops={"HEAL_INTERVAL": 0})
    assert second.wait(timeout=120) == 0, second.output()
    job = assert_written_once(job, 20_000)
    assert job.chunks.get(index=chunk.index).attempts == 2


def test_two_workers_share_a_job_and_no_chunk_is_applied_twice(tmp_path, ann, start_worker):
    start_worker()
    start_worker()
    job = start_orders(ann, tmp_path, 6000, chunk_size=250, atomic="none")
    job = reach_write(job)
    for _ in range(5):  # every write task delivered again and again, as healing might
        send(write_tasks(job), force=True)
        time.sleep(0.2)
    assert_written_once(job, 6000)
    workers = RQWorker.all(queue=get_queue())
    assert len(workers) == 2 and all(w.successful_job_count > 0 for w in workers)
    # Validation too is spread: each worker validated some of the 24 chunks.
    connection = get_queue().connection
    validated_by = {
        RQJob.fetch(task_id(job.pk, "validate", index), connection=connection).worker_name
        for index in range(24)
    }
    assert validated_by == {w.name for w in workers}


def test_a_dropped_database_connection_retries_the_chunk(tmp_path, ann, start_worker):
    start_worker()
    job = start_orders(ann, tmp_path, 4000)
    reach_write(job)
    with table_locked():
        chunk = wait_for(lambda: in_flight(job), timeout=30, what="a chunk in flight")
        with connection.cursor() as cursor:
            for pid in waiting_backends():
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    job = assert_written_once(job, 4000)
    assert job.chunks.get(index=chunk.index).attempts == 2


def test_a_chunk_that_keeps_failing_fails_and_can_be_retried(tmp_path, ann, start_worker):
    start_worker(bulkops={"CHUNK_RETRIES": 0})
    job = start_orders(ann, tmp_path, 3000)
    reach_write(job)
    with table_locked():
        chunk = wait_for(lambda: in_flight(job), timeout=30, what="a chunk in flight")
        with connection.cursor() as cursor:
            for pid in waiting_backends():
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    job = wait_job(job.pk, timeout=60)
    assert job.status == BulkJob.PARTIAL
    failed = job.chunks.get(state=BulkChunk.FAILED)
    assert failed.index == chunk.index and "terminat" in failed.error
    assert f"chunk {chunk.index + 1}" in job.error and "retried" in job.error
    assert job.unprocessed == 1000 and Order.objects.count() == 2000
    assert {r.status for r in services.job_results(job, status="unprocessed")} == {"unprocessed"}

    services.retry_failed_chunks(job=job, user=ann)
    assert_written_once(job, 3000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_a_redis_restart_loses_queued_tasks_and_the_job_still_finishes(
    tmp_path, ann, start_worker, settings, rq_queue
):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(tmp_path)]  # fmt: skip

    def start_redis() -> subprocess.Popen:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_for(lambda: _answers(url), timeout=10, what="redis-server")
        return server

    server = start_redis()
    try:
        settings.RQ_QUEUES = {**settings.RQ_QUEUES, rq_queue: {"URL": url, "DEFAULT_TIMEOUT": 600}}
        start_worker(redis_url=url)
        job = start_orders(ann, tmp_path, 5000, chunk_size=500)
        reach_write(job)
        with table_locked():
            wait_for(lambda: in_flight(job), timeout=30, what="a chunk in flight")
            assert get_queue().count > 0  # tasks wait in Redis ...
            server.send_signal(signal.SIGKILL)
            server.wait()
            server = start_redis()  # ... and are gone with it
            assert get_queue().count == 0
        assert_written_once(job, 5000)
    finally:
        server.kill()
        server.wait()


def _answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.RedisError:
        return False


def test_atomic_all_with_an_error_in_the_last_chunk_writes_nothing(tmp_path, ann, start_worker):
    start_worker()
    catalog()
    rows = order_rows(3000)
    rows[-1][2] = "0"
    path = write_csv(tmp_path / "orders.csv", ORDER_HEADER, rows)
    job = services.start_file_job(
        user=ann, model="catalog.order", file=ContentFile(path.read_bytes(), name="o.csv"),
        mode="create", atomic="all", chunk_size=500,
    )  # fmt: skip
    job = wait_job(job.pk, timeout=90)
    assert job.status == BulkJob.FAILED
    assert Order.objects.count() == 0
    assert [(e.row, e.errors) for e in job.row_errors.all()] == [
        (3001, {"quantity": ["Ensure this value is greater than or equal to 1."]})
    ]
    assert (job.rolled_back, job.errors, job.unprocessed) == (2999, 1, 0)


def test_progress_is_visible_while_atomic_all_writes(tmp_path, ann, start_worker):
    start_worker()
    catalog(products=0)
    path = write_csv(tmp_path / "p.csv", PRODUCT_HEADER, product_rows(4000))
    with connect() as blocker:
        # An uncommitted product with the SKU of row 3002: the job's transaction waits on it.
        blocker.execute(
            "INSERT INTO catalog_product (sku, name, category_id, price, quantity, active) "
            "SELECT 'N-3000', 'x', id, 1, 0, true FROM catalog_category WHERE name = 'Tools'"
        )
        job = services.start_file_job(
            user=ann, model="catalog.product", file=ContentFile(path.read_bytes(), name="p.csv"),
            mode="create", atomic="all", chunk_size=500,
        )  # fmt: skip
        progress = wait_for(
            lambda: _written_so_far(job, 3000), timeout=60, what="progress inside the transaction"
        )
        assert progress["percent"] >= 75.0
        assert Product.objects.count() == 0  # nothing committed yet
        blocker.rollback()
    job = wait_job(job.pk, timeout=60)
    assert (job.status, Product.objects.count()) == (BulkJob.COMPLETED, 4000)


def _written_so_far(job, rows):
    progress = BulkJob.objects.get(pk=job.pk).progress
    return progress if progress["stage"] == "write" and progress["processed"] >= rows else None


def test_cancel_stops_after_the_chunks_in_flight(tmp_path, ann, start_worker):
    start_worker()
    job = start_orders(ann, tmp_path, 5000, chunk_size=500, atomic="none")
    reach_write(job)
    with table_locked():
        wait_for(lambda: in_flight(job), timeout=30, what="a chunk in flight")
        services.cancel_job(job=job, user=ann)
    wait_for(
        lambda: not job.chunks.exclude(claimed_by="").exists(),
        timeout=30,
        what="the chunk in flight",
    )
    time.sleep(1)  # any task still queued finds the job cancelled
    job.refresh_from_db()
    written = Order.objects.count()
    assert job.status == BulkJob.CANCELLED
    assert 0 < written < 5000 and written % 500 == 0
    assert (job.created, job.unprocessed) == (written, 5000 - written)
    statuses = [r.status for r in services.job_results(job)]
    assert statuses.count("created") == written
    assert statuses.count("unprocessed") == 5000 - written


def test_a_users_second_job_waits_for_the_first(tmp_path, ann, start_worker, settings):
    settings.BULKOPS = {**settings.BULKOPS, "MAX_RUNNING_JOBS_PER_USER": 1}
    start_worker(bulkops={"MAX_RUNNING_JOBS_PER_USER": 1})
    start_worker(bulkops={"MAX_RUNNING_JOBS_PER_USER": 1})
    first = start_orders(ann, tmp_path, 3000, chunk_size=250)
    second = start_orders(ann, tmp_path, 3000, chunk_size=250)
    assert BulkJob.objects.get(pk=second.pk).status == BulkJob.QUEUED
    first = wait_job(first.pk, timeout=90)
    second = wait_job(second.pk, timeout=90)
    assert (first.status, second.status) == (BulkJob.COMPLETED, BulkJob.COMPLETED)
    assert second.started_at >= first.finished_at
    assert Order.objects.count() == 6000


def test_workers_read_the_source_from_storage_anywhere(tmp_path, ann, start_worker):
    upload_dir = tmp_path / "upload"
    upload_dir.mkdir()
    catalog()
    path = write_csv(upload_dir / "orders.csv", ORDER_HEADER, order_rows(1500))
    with open(path, "rb") as f:
        job = services.start_file_job(
            user=ann, model="catalog.order", file=f, mode="create", chunk_size=500
        )
    shutil.rmtree(upload_dir)  # the web side's file is gone
    elsewhere, other_tmp = tmp_path / "elsewhere", tmp_path / "tmp"
    elsewhere.mkdir()
    other_tmp.mkdir()
    start_worker(cwd=elsewhere, env={"TMPDIR": str(other_tmp)})
    assert_written_once(job, 1500)


def test_a_worker_stops_on_sigterm(start_worker, rq_queue):
    worker = start_worker()
    wait_for(
        lambda: [w for w in RQWorker.all(queue=get_queue()) if w.get_state() == "idle"],
        timeout=30,
        what="the worker waiting for tasks",
    )
    assert worker.stop(timeout=20) == 0, worker.output()
    assert "starting it again" not in worker.output()
