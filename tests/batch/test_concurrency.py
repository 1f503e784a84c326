"""Independent requests of a batch really run side by side (observed, not assumed);
dependent ones wait; each thread has its own database connection, closed afterwards.

SQLite takes one writer at a time: there the same batches run one after another,
which these tests check too."""

import threading
import time

import pytest
from django.db import connection

from project.catalog.models import Customer, Order
from project.catalog.views import CustomerViewSet
from tests.batch.conftest import by_id, send

pytestmark = pytest.mark.django_db(transaction=True)

DELAY = 0.25
PARALLEL = connection.vendor != "sqlite"


@pytest.fixture
def spans(monkeypatch):
    """Creating a customer takes DELAY seconds; spans[email] = (start, end, thread, db pid)."""
    recorded = {}
    original = CustomerViewSet.perform_create

    def slow(self, serializer):
        start = time.monotonic()
        time.sleep(DELAY)
        original(self, serializer)
        pid = None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
        recorded[serializer.validated_data["email"]] = (
            start,
            time.monotonic(),
            threading.get_ident(),
            pid,
        )

    monkeypatch.setattr(CustomerViewSet, "perform_create", slow)
    return recorded


def create(request_id: str, **extra) -> dict:
    body = {"email": f"{request_id}@example.com", "name": request_id, "country": "DE"}
    return {"id": request_id, "method": "POST", "url": "/api/customers/", "body": body, **extra}


def most_at_once(intervals) -> int:
    events = sorted([(s, 1) for s, e, *_ in intervals] + [(e, -1) for s, e, *_ in intervals])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_independent_requests_overlap_in_time(api, spans):
    started = time.monotonic()
    response = send(api, {"requests": [create(f"r{i}") for i in range(4)]})
    elapsed = time.monotonic() - started

    assert [r["status"] for r in response.json()["responses"]] == [201] * 4
    intervals = list(spans.values())
    if PARALLEL:
        # Every one started before any ended: all four ran at the same time.
        assert max(s for s, *_ in intervals) < min(e for _, e, *_ in intervals)
        assert len({thread for *_, thread, _ in intervals}) == 4
        assert elapsed < 3 * DELAY
    else:
        assert most_at_once(intervals) == 1
    assert Customer.objects.count() == 4


def test_at_most_batch_concurrency_run_at_once(api, spans, settings):
    settings.BULKOPS = {"BATCH_CONCURRENCY": 2}

    response = send(api, {"requests": [create(f"r{i}") for i in range(5)]})

    assert [r["status"] for r in response.json()["responses"]] == [201] * 5
    assert most_at_once(spans.values()) == (2 if PARALLEL else 1)


def test_dependent_requests_wait_for_their_dependencies(api, spans, products):
    placed = "2024-05-01T12:00:00Z"
    response = send(
        api,
        {
            "requests": [
                create("a"),
                create("b"),
                create("after-a", depends_on=["a"]),
                {
                    "id": "o",
                    "method": "POST",
                    "url": "/api/orders/",
                    "depends_on": ["after-a", "b"],
                    "body": {
                        "customer": "{b.body.email}",
                        "product": "E-1",
                        "quantity": 1,
                        "placed_at": placed,
                    },
                },
            ]
        },
    )

    statuses = {k: v["status"] for k, v in by_id(response).items()}
    assert statuses == {"a": 201, "b": 201, "after-a": 201, "o": 201}
    a, b, after_a = (spans[f"{n}@example.com"] for n in ("a", "b", "after-a"))
    assert after_a[0] >= a[1]  # started after its dependency ended
    if PARALLEL:
        assert b[0] < a[1] and a[0] < b[1]  # a and b overlapped
    assert Order.objects.get().customer.email == "b@example.com"


def test_responses_keep_request_order_when_later_ones_finish_first(api, spans):
    response = send(
        api,
        {
            "requests": [
                create("slow"),
                {"id": "fast", "method": "GET", "url": "/api/categories/"},
            ]
        },
    )

    assert [r["id"] for r in response.json()["responses"]] == ["slow", "fast"]


@pytest.mark.skipif(not PARALLEL, reason="PostgreSQL: connections of other threads")
def test_each_thread_has_its_own_connection_and_closes_it(api, spans):
    def backends() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            )
            return cursor.fetchone()[0]

    before = backends()
    send(api, {"requests": [create(f"r{i}") for i in range(4)]})

    assert len({pid for *_, pid in spans.values()}) == 4
    deadline = time.monotonic() + 5
    while backends() > before and time.monotonic() < deadline:
        time.sleep(0.05)  # a closed connection's backend ends a moment later
    assert backends() == before


def test_an_atomic_batch_runs_one_request_at_a_time(api, spans):
    response = send(api, {"atomic": True, "requests": [create(f"r{i}") for i in range(3)]})

    assert [r["status"] for r in response.json()["responses"]] == [201] * 3
    assert most_at_once(spans.values()) == 1
    assert len({thread for *_, thread, _ in spans.values()}) == 1


def test_a_view_that_raises_in_a_worker_thread_is_its_500(api, spans, monkeypatch):
    from project.catalog.views import CategoryViewSet

    def broken(self, request, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(CategoryViewSet, "list", broken)

    response = send(
        api,
        {
            "requests": [
                create("a"),
                {"id": "boom", "method": "GET", "url": "/api/categories/"},
                create("b"),
            ]
        },
    )

    assert [r["status"] for r in response.json()["responses"]] == [201, 500, 201]
    assert Customer.objects.count() == 2


def test_under_atomic_requests_each_request_is_its_own_transaction(
    api, spans, monkeypatch, category_writes_then_refuses
):
    """ATOMIC_REQUESTS wraps each request of a batch as it wraps a direct call; the batch
    itself is not one transaction (its requests still run side by side)."""
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)

    response = send(
        api,
        {
            "requests": [
                create("a"),
                create("b"),
                {"id": "fails", "method": "POST", "url": "/api/categories/", "body": {"name": "F"}},
            ]
        },
    )

    assert [r["status"] for r in response.json()["responses"]] == [201, 201, 400]
    assert Customer.objects.count() == 2
    assert not category_writes_then_refuses.objects.exists()  # rolled back alone
    if PARALLEL:
        assert most_at_once(spans.values()) == 2
