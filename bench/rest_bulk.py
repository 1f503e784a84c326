"""REST bulk throughput: 1,000 single POSTs vs one bulk POST, through a real HTTP server.

    python bench/rest_bulk.py
    python bench/rest_bulk.py --items 1000 --repeats 10 --port 8765

Starts gunicorn with the project's WSGI app (``project.wsgi:application``, 2
workers of one thread each (``gthread``, which keeps connections alive),
``DJANGO_DEBUG=0``) on 127.0.0.1:<port> (default: a free port the script binds and
hands to gunicorn) against PostgreSQL, then, each
phase creating into an empty product table (emptied outside the timed part):

1. ``--items`` products created by as many ``POST /api/products/``, one after the
   other on one ``http.client.HTTPConnection`` with token authentication; every
   answer must be 201; the connection is kept alive (the bench says so if the
   server closed it).
2. the same products, same payloads, in one ``POST /api/products/bulk/``; the answer
   must be 200 with ``summary.created`` equal to the item count;
3. ``--repeats`` more such bulk creates: each duration, p50, p90 and max.

Prints items/s, the ratio of the two, the bulk latencies and the peak RSS of the
gunicorn workers. The database is ``DATABASE_URL`` (default a
``bulkops_bench_rest`` database on the local PostgreSQL, created if missing and
migrated). ``GUNICORN_CMD_ARGS`` reaches gunicorn, e.g. ``--worker-class sync``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from benchdb import ROOT, ensure_database, setup_django

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bulkops_bench_rest"
HOST = "127.0.0.1"
WORKERS = 2
USERNAME = "bench-rest"
CATEGORY = "Tools"
STARTUP_SECONDS = 30.0
STOP_SECONDS = 10.0


def product(i: int) -> dict:
    return {
        "sku": f"BENCH-{i:06d}",
        "name": f"Bench product {i}",
        "category": CATEGORY,
        "price": f"{(i * 7) % 10000 / 100:.2f}",
        "quantity": i % 500,
        "active": bool(i % 3),
        "released": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
    }


def shown_url(url: str) -> str:
    """The database URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# -- database and Django, in this process ----------------------------------------------


def prepare_fixtures() -> str:
    """A superuser with a token, the category; returns the token key."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from project.catalog.models import Category

    user, _ = get_user_model().objects.update_or_create(
        username=USERNAME,
        defaults={"is_staff": True, "is_superuser": True, "is_active": True},
    )
    Category.objects.get_or_create(name=CATEGORY)
    token, _ = Token.objects.get_or_create(user=user)
    return token.key


def empty_products() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE catalog_order, catalog_product CASCADE")


def product_count() -> int:
    from project.catalog.models import Product

    return Product.objects.count()


# -- the server ------------------------------------------------------------------------


def listening_socket(port: int) -> socket.socket:
    """A socket listening on ``HOST:port`` (0: any free port) for gunicorn to take over."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise SystemExit(f"Something already listens on {HOST}:{port}; pick --port.") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def start_server(url: str, sock: socket.socket, log) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SETTINGS_MODULE": "project.settings",
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "project.wsgi:application",
        "--bind",
        f"fd://{sock.fileno()}",
        "--workers",
        str(WORKERS),
        # gthread with one thread: a request at a time per worker, as with sync
        # workers, but connections are kept alive, so the single POSTs share one.
        "--worker-class",
        "gthread",
        "--threads",
        "1",
        "--timeout",
        "120",
        "--log-level",
        "warning",
    ]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        pass_fds=(sock.fileno(),),
    )


def wait_until_ready(server: subprocess.Popen, port: int, token: str) -> None:
    """Until the API answers 200 to an authenticated GET, at most ``STARTUP_SECONDS``."""
    deadline = time.monotonic() + STARTUP_SECONDS
    last = "no answer"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {server.returncode} while starting")
        connection = http.client.HTTPConnection(HOST, port, timeout=5)
        try:
            connection.request("GET", "/api/products/", headers={"Authorization": f"Token {token}"})
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                return
            last = f"HTTP {response.status}"
        except OSError as exc:
            last = str(exc)
        finally:
            connection.close()
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer within {STARTUP_SECONDS:.0f} s ({last})")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=STOP_SECONDS)


def workers_peak_rss_mb(server: subprocess.Popen) -> list[float]:
    """Peak RSS (VmHWM where Linux has it, else current RSS) of each gunicorn worker."""
    import psutil

    peaks = []
    for child in psutil.Process(server.pid).children():
        try:
            status = Path(f"/proc/{child.pid}/status")
            if status.exists():
                line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
                peaks.append(int(line.split()[1]) / 1024)
            else:
                peaks.append(child.memory_info().rss / 1024 / 1024)
        except (psutil.Error, OSError, StopIteration):
            continue
    return peaks


# -- the client ------------------------------------------------------------------------


class Client:
    """One ``http.client`` connection, reopened by http.client if the server closes it."""

    def __init__(self, port: int, token: str) -> None:
        self.connection = http.client.HTTPConnection(HOST, port, timeout=120)
        self.headers = {
            "Authorization": f"Token {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self.closed_by_server = 0

    def post(self, path: str, payload: dict) -> tuple[int, bytes]:
        self.connection.request("POST", path, body=json.dumps(payload), headers=self.headers)
        response = self.connection.getresponse()
        body = response.read()
        if response.will_close:
            self.closed_by_server += 1
        return response.status, body

    def close(self) -> None:
        self.connection.close()


def single_posts(client: Client, items: list[dict]) -> float:
    start = time.perf_counter()
    for i, item in enumerate(items):
        status, body = client.post("/api/products/", item)
        if status != 201:
            raise RuntimeError(f"single POST {i} answered {status}: {body[:500]!r}")
    return time.perf_counter() - start


def bulk_post(client: Client, items: list[dict]) -> float:
    start = time.perf_counter()
    status, body = client.post("/api/products/bulk/", {"items": items})
    outcome = json.loads(body) if status == 200 else None
    seconds = time.perf_counter() - start
    if outcome is None:
        raise RuntimeError(f"bulk POST answered {status}: {body[:500]!r}")
    created = outcome.get("summary", {}).get("created")
    if created != len(items):
        raise RuntimeError(
            f"bulk POST created {created} of {len(items)}: status {outcome.get('status')}, "
            f"first results {json.dumps(outcome.get('results', [])[:3])[:500]}"
        )
    return seconds


def check_written(expected: int, what: str) -> None:
    count = product_count()
    if count != expected:
        raise RuntimeError(f"{what}: {count} products in the table, expected {expected}")


def warm_up(client: Client) -> None:
    """Both workers import, connect and resolve once before anything is timed."""
    empty_products()
    warm = [product(900_000 + i) for i in range(20)]
    for item in warm[:10]:
        client.post("/api/products/", item)
    for start in (10, 15):
        bulk_post(client, warm[start : start + 5])
    empty_products()


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def run(args: argparse.Namespace, token: str, server: subprocess.Popen) -> None:
    n = args.items
    items = [product(i) for i in range(n)]
    client = Client(args.port, token)
    try:
        warm_up(client)

        empty_products()
        client.closed_by_server = 0
        single = single_posts(client, items)
        check_written(n, "single POSTs")
        reconnects = client.closed_by_server

        empty_products()
        bulk = bulk_post(client, items)
        check_written(n, "bulk POST")

        runs = []
        for _ in range(args.repeats):
            empty_products()
            runs.append(bulk_post(client, items))
            check_written(n, "bulk POST")
    finally:
        client.close()
    empty_products()

    print(f"single POSTs   {n:>6,} items  {single:6.2f} s  {n / single:>9,.0f} items/s")
    print(f"one bulk POST  {n:>6,} items  {bulk:6.2f} s  {n / bulk:>9,.0f} items/s")
    print(f"bulk is {single / bulk:.1f}x faster than {n:,} single POSTs")
    if reconnects:
        print(
            f"  (the server closed the connection after {reconnects:,} of {n:,} single POSTs: "
            "the server did not keep the connection alive)"
        )
    if runs:
        ms = [r * 1000 for r in runs]
        print(
            f"{args.repeats} bulk creates of {n:,}: p50 {statistics.median(ms):.0f} ms  "
            f"p90 {percentile(ms, 0.9):.0f} ms  max {max(ms):.0f} ms  "
            f"(runs: {', '.join(f'{x:.0f}' for x in ms)})"
        )
    peaks = workers_peak_rss_mb(server)
    if peaks:
        print(
            f"gunicorn workers peak RSS: {', '.join(f'{p:.0f}' for p in peaks)} MB "
            f"(max {max(peaks):.0f} MB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000, help="items per phase (bulk max 1000)")
    parser.add_argument("--repeats", type=int, default=10, help="timed bulk creates in phase 3")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DB)
    parser.add_argument("--port", type=int, default=0, help="default: any free port")
    args = parser.parse_args()
    if args.items < 1 or args.repeats < 0:
        parser.error("--items must be at least 1 and --repeats at least 0")

    if not args.database_url.startswith("postgres"):
        raise SystemExit(
            f"This benchmark needs PostgreSQL; DATABASE_URL is {shown_url(args.database_url)}."
        )
    ensure_database(args.database_url)
    setup_django(args.database_url)
    token = prepare_fixtures()

    with tempfile.TemporaryFile(mode="w+") as log:
        sock = listening_socket(args.port)
        args.port = sock.getsockname()[1]
        server = start_server(args.database_url, sock, log)
        try:
            wait_until_ready(server, args.port, token)
            print(
                f"server: gunicorn {WORKERS} workers on {HOST}:{args.port}, "
                f"{shown_url(args.database_url)}, python {sys.version.split()[0]}"
            )
            run(args, token, server)
        except BaseException:
            stop_server(server)
            log.seek(0)
            tail = log.read()[-3000:]
            if tail.strip():
                print(f"--- gunicorn log (tail) ---\n{tail}", file=sys.stderr)
            raise
        finally:
            stop_server(server)
            sock.close()
            from django.db import connections

            connections.close_all()


if __name__ == "__main__":
    main()
