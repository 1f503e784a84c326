"""The admin's preview against ``bulk_import --dry-run``: the same XLSX, validated both ways.

    python bench/admin_preview.py                        # 100,000 rows, 2 workers (PostgreSQL)
    python bench/admin_preview.py --rows 5000            # a smoke run

(a) ``manage.py bulk_import catalog.Product products.xlsx --dry-run``: read and validate
    every row in one process, write nothing.
(b) The admin: a staff user uploads the same file through the admin's upload view (the
    Django test client, in this process, as a browser would post it), RQ workers
    (``manage.py rqworker bulkops``, already waiting) read and validate it, and the time
    ends when the preview page (``/admin/bulkops/bulkjob/<id>/change/``) shows the
    validated totals.

Prints both times and the ratio (b)/(a); the target is at most 1.5. The database is
``DATABASE_URL`` (default a ``bulkops_bench`` database on the local PostgreSQL, created if
missing); Redis is ``REDIS_URL``. Stop ``make run`` first: no other worker may serve the
``bulkops`` queue of that Redis database.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchdb import ROOT, ensure_database, setup_django
from import_throughput import write_xlsx
from jobs_throughput import DEFAULT_DB, child_env, reset_tables, start_workers, stop_workers

ADMIN_USER = "bench-admin"


def run_dry_run(path: Path, args: argparse.Namespace) -> float:
    reset_tables()
    started = time.perf_counter()
    status = subprocess.run(
        [sys.executable, "manage.py", "bulk_import", "catalog.Product", str(path), "--dry-run"],
        cwd=ROOT,
        env=child_env(args),
        stdout=subprocess.DEVNULL,
        check=False,
    ).returncode
    seconds = time.perf_counter() - started
    if status not in (0, 1):
        raise SystemExit(f"bulk_import --dry-run failed (exit status {status}).")
    return seconds


def run_admin(path: Path, args: argparse.Namespace) -> tuple[float, dict]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from bulkops.jobs.models import BulkJob

    reset_tables()
    user_model = get_user_model()
    user = user_model.objects.filter(username=ADMIN_USER).first() or (
        user_model.objects.create_superuser(ADMIN_USER, "bench@example.com", "-")
    )
    client = Client()
    client.force_login(user)
    workers = start_workers(args.workers, args)
    try:
        started = time.perf_counter()
        with path.open("rb") as upload:
            response = client.post(
                "/admin/catalog/product/bulk-import/",
                {"file": upload, "mode": "create", "atomic": "none", "chunk_size": args.chunk_size},
            )
        if response.status_code != 302:
            raise SystemExit(f"The upload was refused (HTTP {response.status_code}).")
        job_url = response["Location"]
        job = BulkJob.objects.get(pk=job_url.rstrip("/").split("/")[-2])
        while True:
            job.refresh_from_db()
            if job.status == BulkJob.VALIDATED or job.is_finished:
                break
            time.sleep(0.05)
        page = client.get(job_url)
        seconds = time.perf_counter() - started
        if page.status_code != 200 or b"Confirm import of" not in page.content:
            raise SystemExit(f"No preview: the job is {job.status} ({job.error}).")
        outcome = {
            "status": job.status,
            "rows": job.rows_validated,
            "valid": job.rows_validated - job.invalid_rows,
            "invalid": job.invalid_rows,
        }
        from bulkops.jobs import services

        services.cancel_job(job=job, user=user)
    finally:
        stop_workers(workers)
    return seconds, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the XLSX")
    parser.add_argument("--workers", type=int, default=2, help="RQ workers for the admin's job")
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DB)
    args = parser.parse_args()

    ensure_database(args.database_url)
    setup_django(args.database_url)
    print(
        f"database: {args.database_url}  rows: {args.rows:,}  workers: {args.workers}  "
        f"python {sys.version.split()[0]}  cores: {os.cpu_count()}"
    )
    with tempfile.TemporaryDirectory(prefix="bulkops-bench-") as tmp:
        path = Path(tmp) / "products.xlsx"
        write_xlsx(path, args.rows)
        print(f"xlsx: {path.stat().st_size / 1024 / 1024:.1f} MB")
        dry = run_dry_run(path, args)
        print(f"(a) bulk_import --dry-run          {dry:8.2f} s  {args.rows / dry:>9,.0f} rows/s")
        admin, outcome = run_admin(path, args)
        print(
            f"(b) admin upload -> preview ready  {admin:8.2f} s  {args.rows / admin:>9,.0f} rows/s"
            f"  ({outcome['rows']:,} rows: {outcome['valid']:,} valid, "
            f"{outcome['invalid']:,} invalid)"
        )
        ratio = admin / dry
        verdict = "within" if ratio <= 1.5 else "OVER"
        print(f"(b)/(a) = {ratio:.2f}  ({verdict} the target of 1.5)")


if __name__ == "__main__":
    main()
