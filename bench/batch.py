"""Generic batch throughput: 20 mixed API calls as one batch vs 20 requests, and the
same batch side by side vs one after another, through a real HTTP server.

    python bench/batch.py
    python bench/batch.py --repeats 30

Starts gunicorn (``project.wsgi:application``, as ``bench/rest_bulk.py`` does: 2
``gthread`` workers of one thread, ``DJANGO_DEBUG=0``) on an ephemeral port of
127.0.0.1 against PostgreSQL, then repeats, ``--repeats`` times, four phases, each on
one kept-alive ``http.client`` connection with token authentication and fresh
customers and products (unique per round, so no phase sees another's rows):

1. ``separate``: 20 mixed operations (6 customer and 4 product creates, 4 product
   reads, 3 product updates, 2 order creates, 1 customer list), one request each;
2. ``parallel``: the same 20 as one ``POST /api/batch/``, no dependencies, so up to
   ``BATCH_CONCURRENCY`` (the project's setting, default 4) run at a time;
3. ``sequential``: the same batch with each request depending on the previous one
   (one after another, no transaction);
4. ``atomic``: the same batch with ``"atomic": true`` (in order, one transaction).

Every answer is checked (201/200 per operation); then it prints the median and p90
of each phase and the two ratios: separate / parallel and sequential / parallel.
The database is ``DATABASE_URL`` (default a ``bulkops_bench_batch`` database on the
local PostgreSQL, created if missing and migrated).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from benchdb import ensure_database, setup_django
from rest_bulk import (
    HOST,
    Client,
    listening_socket,
    percentile,
    shown_url,
    start_server,
    stop_server,
    wait_until_ready,
)

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bulkops_bench_batch"
USERNAME = "bench-batch"
CATEGORY = "Tools"
PRODUCTS = 20  # existing products the reads, updates and orders use
PLACED = "2024-05-01T12:00:00Z"


# -- database and Django, in this process ----------------------------------------------


def prepare_fixtures() -> tuple[str, list[int]]:
    """A superuser with a token, the category, existing products and a customer; returns
    the token key and the products' ids."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from project.catalog.models import Category, Customer, Product

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE catalog_order, catalog_product, catalog_customer CASCADE")
    user, _ = get_user_model().objects.update_or_create(
        username=USERNAME,
        defaults={"is_staff": True, "is_superuser": True, "is_active": True},
    )
    category, _ = Category.objects.get_or_create(name=CATEGORY)
    Customer.objects.create(email="buyer@example.com", name="Buyer", country="DE")
    products = Product.objects.bulk_create(
        Product(sku=f"BASE-{i:03d}", name=f"Base {i}", category=category, price="5.00")
        for i in range(PRODUCTS)
    )
    token, _ = Token.objects.get_or_create(user=user)
    return token.key, [p.pk for p in products]


def empty_tables() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE catalog_order, catalog_product, catalog_customer CASCADE")


# -- the operations --------------------------------------------------------------------


def operations(tag: str, product_ids: list[int]) -> list[dict]:
    """20 independent operations, unique to ``tag``: (id, method, url, body, status)."""
    ops: list[dict] = []

    def op(method: str, url: str, body: dict | None, status: int) -> None:
        entry = {"id": f"r{len(ops)}", "method": method, "url": url, "status": status}
        if body is not None:
            entry["body"] = body
        ops.append(entry)

    for i in range(6):
        customer = {"email": f"{tag}-{i}@example.com", "name": f"C {i}", "country": "DE"}
        op("POST", "/api/customers/", customer, 201)
    for i in range(4):
        product = {"sku": f"{tag}-{i}", "name": f"P {i}", "category": CATEGORY, "price": "1.00"}
        op("POST", "/api/products/", product, 201)
    for pk in product_ids[:4]:
        op("GET", f"/api/products/{pk}/", None, 200)
    for n, pk in enumerate(product_ids[4:7]):
        op("PATCH", f"/api/products/{pk}/", {"quantity": n + 1}, 200)
    for i in (7, 8):
        order = {
            "customer": "buyer@example.com",
            "product": f"BASE-{i:03d}",
            "quantity": 1,
            "placed_at": PLACED,
        }
        op("POST", "/api/orders/", order, 201)
    op("GET", "/api/customers/?page=1", None, 200)
    assert len(ops) == 20
    return ops


class BenchClient(Client):
    """``rest_bulk``'s kept-alive client, for any method."""

    def send(self, method: str, path: str, payload: dict | None = None) -> tuple[int, bytes]:
        body = None if payload is None else json.dumps(payload)
        self.connection.request(method, path, body=body, headers=self.headers)
        response = self.connection.getresponse()
        content = response.read()
        if response.will_close:
            self.closed_by_server += 1
        return response.status, content


def separate(client: BenchClient, ops: list[dict]) -> float:
    start = time.perf_counter()
    answers = [client.send(o["method"], o["url"], o.get("body")) for o in ops]
    seconds = time.perf_counter() - start
    for o, (status, body) in zip(ops, answers, strict=True):
        if status != o["status"]:
            raise RuntimeError(f"{o['method']} {o['url']} answered {status}: {body[:300]!r}")
    return seconds


def batch(client: BenchClient, ops: list[dict], *, mode: str) -> float:
    requests = [{k: v for k, v in o.items() if k != "status"} for o in ops]
    if mode == "sequential":
        for previous, request in zip(requests, requests[1:], strict=False):
            request["depends_on"] = [previous["id"]]
    envelope = {"requests": requests, "atomic": mode == "atomic"}
    start = time.perf_counter()
    status, body = client.send("POST", "/api/batch/", envelope)
    seconds = time.perf_counter() - start
    if status != 200:
        raise RuntimeError(f"batch ({mode}) answered {status}: {body[:500]!r}")
    for o, answer in zip(ops, json.loads(body)["responses"], strict=True):
        if answer["status"] != o["status"]:
            raise RuntimeError(f"batch ({mode}): {o['id']} answered {answer}")
    return seconds


# -- the run ---------------------------------------------------------------------------

PHASES = ("separate", "parallel", "sequential", "atomic")


def run(args: argparse.Namespace, port: int, token: str, product_ids: list[int]) -> None:
    client = BenchClient(port, token)
    times: dict[str, list[float]] = {phase: [] for phase in PHASES}
    try:
        # Warm-up: both workers import, connect and resolve before anything is timed.
        for phase in PHASES:
            run_phase(client, phase, operations(f"warm-{phase}", product_ids))
        for round_ in range(args.repeats):
            for phase in PHASES:
                ops = operations(f"r{round_}-{phase}", product_ids)
                times[phase].append(run_phase(client, phase, ops))
    finally:
        client.close()

    median = {phase: statistics.median(values) for phase, values in times.items()}
    for phase in PHASES:
        ms = [t * 1000 for t in times[phase]]
        label = "20 separate requests" if phase == "separate" else f"one batch, {phase}"
        print(
            f"{label:<26} median {statistics.median(ms):7.1f} ms  p90 "
            f"{percentile(ms, 0.9):7.1f} ms  ({len(ms)} runs)"
        )
    print(
        f"one batch is {median['separate'] / median['parallel']:.2f}x faster than "
        "20 separate requests on a kept-alive connection"
    )
    print(
        f"parallel is {median['sequential'] / median['parallel']:.2f}x faster than the same "
        f"batch one request after another ({median['atomic'] / median['parallel']:.2f}x "
        "faster than atomic)"
    )
    if client.closed_by_server:
        print(f"  (the server closed the connection {client.closed_by_server} times)")


def run_phase(client: BenchClient, phase: str, ops: list[dict]) -> float:
    if phase == "separate":
        return separate(client, ops)
    return batch(client, ops, mode=phase)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds of every phase")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DB)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if not args.database_url.startswith("postgres"):
        raise SystemExit(
            f"This benchmark needs PostgreSQL; DATABASE_URL is {shown_url(args.database_url)}."
        )
    ensure_database(args.database_url)
    setup_django(args.database_url)
    token, product_ids = prepare_fixtures()
    from bulkops.conf import bulkops_settings

    concurrency = bulkops_settings.BATCH_CONCURRENCY
    with tempfile.TemporaryFile(mode="w+") as log:
        # gunicorn takes over a socket this process already listens on: no port race.
        sock = listening_socket(0)
        port = sock.getsockname()[1]
        server = start_server(args.database_url, sock, log)
        try:
            wait_until_ready(server, port, token)
            print(
                f"server: gunicorn 2 workers on {HOST}:{port}, {shown_url(args.database_url)}, "
                f"BATCH_CONCURRENCY {concurrency}, python {sys.version.split()[0]}"
            )
            run(args, port, token, product_ids)
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
            empty_tables()
            from django.db import connections

            connections.close_all()


if __name__ == "__main__":
    main()
