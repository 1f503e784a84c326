"""Job throughput: one file imported synchronously, then as a job with 1 and 2 RQ workers.

    python bench/jobs_throughput.py                      # 1,000,000-row CSV, 100,000-row XLSX
    python bench/jobs_throughput.py --rows 5000 --xlsx-rows 2000     # a smoke run

Generates N product rows as CSV (the generator of import_throughput.py) and imports
them into an empty product table three times, each timed from the start of the command
to the last row written:

  (a) ``manage.py bulk_import catalog.Product products.csv`` (synchronous);
  (b) a job (``bulkops.jobs.services.start_file_job``, what ``bulk_import --async`` and
      the admin call) with one ``manage.py rqworker bulkops`` already waiting;
  (c) the same with two workers.

Then a ``--xlsx-rows`` XLSX file as a job with two workers. Prints rows/s, the ratios
(c)/(b) and (c)/(a), the peak RSS of every worker process (work-horses included) and
the largest gap between two updates of the job's progress.

The database is ``DATABASE_URL`` (default a ``bulkops_bench`` database on the local
PostgreSQL, created if missing); Redis is ``REDIS_URL`` (the project's default). The
``bulkops`` queue of that Redis database must have no other worker: stop ``make run``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from benchdb import ROOT, ensure_database, setup_django
from import_throughput import CATEGORIES, write_csv, write_xlsx

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bulkops_bench"


def child_env(args: argparse.Namespace) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": args.database_url, "DJANGO_DEBUG": "0"}


def reset_tables() -> None:
    from django.core.files.storage import storages
    from django.db import connection

    from bulkops.jobs.models import BulkJob
    from project.catalog.models import Category, Order, Product

    for job in BulkJob.objects.exclude(file_name=""):
        storages[job.storage].delete(job.file_name)
    BulkJob.objects.all().delete()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE catalog_order, catalog_product, catalog_category RESTART IDENTITY CASCADE"
            )
    else:
        Order.objects.all().delete()
        Product.objects.all().delete()
        Category.objects.all().delete()
    Category.objects.bulk_create([Category(name=n) for n in CATEGORIES])


class PeakRss:
    """Samples the RSS of some processes and their children five times a second."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for pid in self.pids:
                try:
                    parent = psutil.Process(pid)
                    for process in [parent, *parent.children(recursive=True)]:
                        rss = process.memory_info().rss / 1024 / 1024
                        self.peak_mb = max(self.peak_mb, rss)
                except psutil.NoSuchProcess:
                    continue


def live_workers(queue) -> list:
    """Workers of ``queue`` that sent a heartbeat lately (a killed one's record outlives it)."""
    from datetime import UTC, datetime, timedelta

    from rq import Worker

    recent = datetime.now(UTC) - timedelta(seconds=30)
    return [
        w
        for w in Worker.all(queue=queue)
        if w.last_heartbeat and w.last_heartbeat.replace(tzinfo=UTC) > recent
    ]


def start_workers(count: int, args: argparse.Namespace) -> list[subprocess.Popen]:
    import django_rq

    queue = django_rq.get_queue("bulkops")
    if live_workers(queue):
        raise SystemExit("Another worker serves the bulkops queue of this Redis; stop it first.")
    queue.empty()
    workers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "bulkops", "--verbosity", "0"],
            cwd=ROOT,
            env=child_env(args),
            stdin=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    deadline = time.monotonic() + 60
    while len(live_workers(queue)) < count:
        if time.monotonic() > deadline:
            raise SystemExit("The workers did not start within 60 s.")
        time.sleep(0.2)
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def run_sync(path: Path, args: argparse.Namespace) -> dict:
    reset_tables()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "bulk_import", "catalog.Product", str(path)],
        cwd=ROOT,
        env=child_env(args),
        stdout=subprocess.DEVNULL,
    )
    with PeakRss([process.pid]) as rss:
        status = process.wait()
    seconds = time.perf_counter() - started
    if status not in (0, 1):
        raise SystemExit(f"bulk_import failed (exit status {status}).")
    return {"seconds": seconds, "peak_rss_mb": rss.peak_mb, **written()}


def written() -> dict:
    from project.catalog.models import Product

    return {"in_db": Product.objects.count()}


def run_job(path: Path, workers: int, args: argparse.Namespace) -> dict:
    """Start the job as a command would and follow its progress until it ends."""
    from bulkops.jobs import services
    from bulkops.jobs.models import BulkJob

    reset_tables()
    processes = start_workers(workers, args)
    try:
        with PeakRss([p.pid for p in processes]) as rss:
            started = time.perf_counter()
            with path.open("rb") as f:
                job = services.start_file_job(
                    user=None, model="catalog.product", file=f, filename=path.name,
                    mode="create", source=BulkJob.SOURCE_COMMAND,
                )  # fmt: skip
            updates: list[float] = []
            stages: list[tuple[str, float]] = []
            last = None
            while True:
                job.refresh_from_db()
                if job.progress_at != last:
                    last = job.progress_at
                    updates.append(time.perf_counter())
                if not stages or stages[-1][0] != job.stage:
                    stages.append((job.stage, time.perf_counter()))
                if job.is_finished:
                    break
                time.sleep(0.05)
            seconds = time.perf_counter() - started
    finally:
        stop_workers(processes)
    gaps = [b - a for a, b in zip(updates, updates[1:], strict=False)]
    ends = [at for _, at in stages[1:]] + [started + seconds]
    return {
        "stages": "  ".join(
            f"{name} {end - at:.1f} s" for (name, at), end in zip(stages, ends, strict=True)
        ),
        "seconds": seconds,
        "peak_rss_mb": rss.peak_mb,
        "status": job.status,
        "max_gap": max(gaps, default=0.0),
        "updates": len(updates),
        "error": job.error,
        **written(),
    }


def report(label: str, rows: int, outcome: dict) -> float:
    rate = rows / outcome["seconds"] if outcome["seconds"] else 0.0
    line = (
        f"{label:<34} {rows:>9,} rows  {outcome['seconds']:8.2f} s  {rate:>9,.0f} rows/s  "
        f"peak RSS {outcome['peak_rss_mb']:5.0f} MB"
    )
    if "max_gap" in outcome:
        line += f"  largest progress gap {outcome['max_gap']:.2f} s"
    print(line)
    if outcome.get("stages"):
        print(f"    stages: {outcome['stages']}")
    if outcome["in_db"] != rows or outcome.get("status", "completed") != "completed":
        print(f"  ! not every row was imported: {json.dumps(outcome, default=str)}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the CSV")
    parser.add_argument("--xlsx-rows", type=int, default=100_000, help="rows of the XLSX (0: skip)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DB)
    args = parser.parse_args()

    ensure_database(args.database_url)
    setup_django(args.database_url)
    print(
        f"database: {args.database_url}  rows: {args.rows:,}  python {sys.version.split()[0]}  "
        f"cores: {os.cpu_count()}"
    )
    with tempfile.TemporaryDirectory(prefix="bulkops-bench-") as tmp:
        csv_path = Path(tmp) / "products.csv"
        write_csv(csv_path, args.rows)
        print(f"csv: {csv_path.stat().st_size / 1024 / 1024:.1f} MB")
        a = report("(a) bulk_import, synchronous", args.rows, run_sync(csv_path, args))
        b = report("(b) job, 1 worker", args.rows, run_job(csv_path, 1, args))
        c = report("(c) job, 2 workers", args.rows, run_job(csv_path, 2, args))
        print(f"(c)/(b) = {c / b:.2f}   (c)/(a) = {c / a:.2f}")
        if args.xlsx_rows:
            xlsx_path = Path(tmp) / "products.xlsx"
            write_xlsx(xlsx_path, args.xlsx_rows)
            print(f"xlsx: {xlsx_path.stat().st_size / 1024 / 1024:.1f} MB")
            report("xlsx job, 2 workers", args.xlsx_rows, run_job(xlsx_path, 2, args))


if __name__ == "__main__":
    main()
