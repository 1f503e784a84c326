"""Idempotency-Key on bulk requests and _idempotency_key on items (CONTRACT §3)."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from bulkops.idempotency import STALE_AFTER, ItemKeys, fingerprint
from bulkops.mixins import ENGINE_IN_TRANSACTION
from bulkops.models import IdempotencyRecord, ItemIdempotencyRecord
from project.catalog.models import Category, Order, Product
from project.catalog.views import OrderViewSet, ProductViewSet
from tests.api.helpers import BULK_URL, bulk, new_product, skus
from tests.factories import CustomerFactory, ProductFactory

URL = BULK_URL.format("products")
PAYLOAD = {"items": [new_product("I-1"), new_product("I-2", price="-1")]}


@pytest.fixture
def performed(monkeypatch):
    """How many times the product viewset ran the engine."""
    calls = []
    original = ProductViewSet.perform_bulk_create

    def counting(self, *, items, options):
        calls.append(len(items))
        return original(self, items=items, options=options)

    monkeypatch.setattr(ProductViewSet, "perform_bulk_create", counting)
    return calls


# -- the Idempotency-Key header ----------------------------------------------------------


@pytest.mark.django_db
def test_a_retry_with_the_same_payload_replays_the_first_response(api, tools, performed):
    first = bulk(api, "post", "products", PAYLOAD, HTTP_IDEMPOTENCY_KEY="k-1")
    again = bulk(api, "post", "products", PAYLOAD, HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.status_code == again.status_code == 200
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert performed == [2]
    assert skus() == ["I-1"]


@pytest.mark.django_db
def test_the_same_key_with_another_payload_is_422(api, tools, performed):
    bulk(api, "post", "products", PAYLOAD, HTTP_IDEMPOTENCY_KEY="k-1")
    other = {"items": [new_product("I-3")]}

    response = bulk(api, "post", "products", other, HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 422
    assert response.json()["error"] == "idempotency_key_reused"
    assert "k-1" in response.json()["message"]
    patch = bulk(api, "patch", "products", PAYLOAD, HTTP_IDEMPOTENCY_KEY="k-1")
    assert patch.status_code == 422  # another method is another request
    assert performed == [2]
    assert skus() == ["I-1"]


@pytest.mark.django_db
def test_a_key_still_in_flight_is_409(api, admin, tools, performed):
    IdempotencyRecord.objects.create(
        user=admin,
        key="k-1",
        fingerprint=fingerprint(method="POST", path=URL, body=PAYLOAD),
        method="POST",
        path=URL,
    )

    response = bulk(api, "post", "products", PAYLOAD, HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 409
    assert response.json()["error"] == "idempotency_in_flight"
    assert performed == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("state", "age"),
    [
        (IdempotencyRecord.DONE, timedelta(seconds=86_401)),  # past IDEMPOTENCY_TTL
        (IdempotencyRecord.IN_FLIGHT, STALE_AFTER + timedelta(seconds=1)),  # a dead request
    ],
)
def test_an_expired_or_abandoned_key_is_new_again(api, tools, performed, state, age):
    bulk(api, "post", "products", PAYLOAD, HTTP_IDEMPOTENCY_KEY="k-1")
    Product.objects.all().delete()
    IdempotencyRecord.objects.update(state=state, created_at=timezone.now() - age)

    response = bulk(api, "post", "products", PAYLOAD, HTTP_IDEMPOTENCY_KEY="k-1")

    assert "Idempotent-Replayed" not in response.headers
    assert performed == [2, 2]
    assert skus() == ["I-1"]
    assert IdempotencyRecord.objects.get().state == IdempotencyRecord.DONE


@pytest.mark.django_db
def test_the_ttl_comes_from_settings(api, tools, performed, settings):
    settings.BULKOPS = {"IDEMPOTENCY_TTL": 60}
    bulk(api, "post", "products", PAYLOAD, HTTP_IDEMPOTENCY_KEY="k-1")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(seconds=61))
    Product.objects.all().delete()

    bulk(api, "post", "products", PAYLOAD, HTTP_IDEMPOTENCY_KEY="k-1")

    assert performed == [2, 2]


@pytest.mark.django_db
def test_work_that_fails_releases_the_key(api, tools, monkeypatch):
    def broken(self, *, items, options):
        raise RuntimeError("boom")

    monkeypatch.setattr(ProductViewSet, "perform_bulk_create", broken)
    api.raise_request_exception = False
    failed = bulk(api, "post", "products", PAYLOAD, HTTP_IDEMPOTENCY_KEY="k-1")
    assert failed.status_code == 500 and failed.json()["error"] == "server_error"
    assert not IdempotencyRecord.objects.exists()

    monkeypatch.undo()
    response = bulk(api, "post", "products", PAYLOAD, HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 200 and skus() == ["I-1"]


@pytest.mark.django_db
def test_keys_are_per_user(api, tools, make_user, client_for, performed):
    bulk(api, "post", "products", PAYLOAD, HTTP_IDEMPOTENCY_KEY="k-1")
    other = client_for(make_user(superuser=True))

    response = bulk(
        other, "post", "products", {"items": [new_product("I-9")]}, HTTP_IDEMPOTENCY_KEY="k-1"
    )

    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response.headers
    assert skus() == ["I-1", "I-9"]


@pytest.mark.django_db
def test_a_refused_request_claims_nothing(api, tools):
    response = bulk(api, "post", "products", {"items": 1}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 400
    assert not IdempotencyRecord.objects.exists()


def _send(user, body, key, results, name, close=True):
    try:
        client = APIClient()
        client.force_authenticate(user)
        results[name] = bulk(client, "post", "products", body, HTTP_IDEMPOTENCY_KEY=key)
    finally:
        if close:
            connection.close()


def _need_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("concurrent requests need PostgreSQL (SQLite serialises its writers)")


@pytest.mark.django_db(transaction=True)
def test_a_request_while_the_first_runs_is_409_and_a_later_one_replays(admin, tools, monkeypatch):
    _need_postgresql()
    started, release = threading.Event(), threading.Event()
    calls = []
    original = ProductViewSet.perform_bulk_create

    def slow(self, *, items, options):
        calls.append(1)
        started.set()
        release.wait(10)
        return original(self, items=items, options=options)

    monkeypatch.setattr(ProductViewSet, "perform_bulk_create", slow)
    results: dict = {}
    first = threading.Thread(target=_send, args=(admin, PAYLOAD, "k-c", results, "first"))
    first.start()
    try:
        assert started.wait(10)
        _send(admin, PAYLOAD, "k-c", results, "during", close=False)
    finally:
        release.set()
        first.join(10)
    _send(admin, PAYLOAD, "k-c", results, "after", close=False)

    assert results["first"].status_code == 200
    assert results["during"].status_code == 409
    assert results["during"].json()["error"] == "idempotency_in_flight"
    assert results["after"].headers["Idempotent-Replayed"] == "true"
    assert results["after"].content == results["first"].content
    assert calls == [1]
    assert skus() == ["I-1"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_execute_once(admin, tools, monkeypatch):
    _need_postgresql()
    calls = []
    original = ProductViewSet.perform_bulk_create
    barrier = threading.Barrier(4)

    def slow(self, *, items, options):
        calls.append(1)
        time.sleep(0.3)
        return original(self, items=items, options=options)

    monkeypatch.setattr(ProductViewSet, "perform_bulk_create", slow)
    results: dict = {}

    def racer(name):
        barrier.wait(5)
        _send(admin, PAYLOAD, "k-race", results, name)

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)

    assert calls == [1]
    assert skus() == ["I-1"]
    codes = sorted(r.status_code for r in results.values())
    assert len(codes) == 4 and codes.count(200) >= 1 and set(codes) <= {200, 409}
    executed = [
        r
        for r in results.values()
        if r.status_code == 200 and not r.has_header("Idempotent-Replayed")
    ]
    assert len(executed) == 1


# -- _idempotency_key on items -------------------------------------------------------------


def keyed(sku: str, key: str, **values):
    return new_product(sku, _idempotency_key=key, **values)


@pytest.mark.django_db
def test_an_applied_item_is_replayed_with_its_first_outcome(api, tools, performed):
    first = bulk(api, "post", "products", {"items": [keyed("K-1", "a", _ref="one")]}).json()
    # The same item; a _ref is not part of it.
    items = [new_product("K-2"), keyed("K-1", "a", _ref="two"), new_product("K-3")]

    body = bulk(api, "post", "products", {"items": items}).json()

    assert body["status"] == "completed"
    assert body["summary"]["replayed"] == 1 and body["summary"]["created"] == 2
    assert [r["index"] for r in body["results"]] == [0, 1, 2]
    replayed = body["results"][1]
    assert replayed["status"] == "replayed"
    assert replayed["ref"] == "two"
    assert replayed["id"] == first["results"][0]["id"]
    assert replayed["data"] == first["results"][0]["data"]
    assert performed == [1, 2]  # the replayed item never reached the engine
    assert skus() == ["K-1", "K-2", "K-3"]
    assert Product.objects.get(sku="K-1").name == "Product K-1"


@pytest.mark.django_db
def test_an_applied_update_is_not_applied_again(api, products):
    item = {"sku": "E-0", "price": "1.00", "_idempotency_key": "u"}
    bulk(api, "patch", "products", {"items": [item]})
    Product.objects.filter(sku="E-0").update(price="5.00")  # someone changes it since

    body = bulk(api, "patch", "products", {"items": [item]}).json()

    assert body["results"][0]["status"] == "replayed"
    assert body["results"][0]["data"]["price"] == "1.00"  # the first outcome
    assert str(Product.objects.get(sku="E-0").price) == "5.00"  # not applied again


@pytest.mark.django_db
def test_a_key_reused_for_another_item_is_that_items_error(api, products):
    first = bulk(api, "post", "products", {"items": [keyed("K-1", "a")]}).json()
    reused = {"_idempotency_key": ["Idempotency key reused for a different item."]}

    other_payload = bulk(
        api, "post", "products", {"items": [keyed("K-1", "a", name="changed"), keyed("K-2", "b")]}
    ).json()
    other_operation = bulk(
        api,
        "patch",
        "products",
        {"items": [{"sku": "E-1", "price": "7.00", "_idempotency_key": "a"}]},
    ).json()
    other_object = bulk(api, "put", "products", {"items": [keyed("E-2", "a")]}).json()

    assert other_payload["results"][0] == {"index": 0, "status": "error", "errors": reused}
    assert other_payload["results"][1]["status"] == "created"
    assert other_operation["results"][0]["errors"] == reused
    assert other_object["results"][0]["errors"] == reused
    assert Product.objects.get(sku="K-1").name == "Product K-1"
    assert str(Product.objects.get(sku="E-1").price) == "10.00"
    assert Product.objects.get(sku="E-2").name == "Existing 2"
    # The key still replays the item it was first used for.
    again = bulk(api, "post", "products", {"items": [keyed("K-1", "a")]}).json()
    assert again["results"][0]["status"] == "replayed"
    assert again["results"][0]["id"] == first["results"][0]["id"]


@pytest.mark.django_db
def test_a_dry_run_reports_a_reused_key_too(api, tools):
    bulk(api, "post", "products", {"items": [keyed("K-1", "a")]})
    body = bulk(
        api, "post", "products", {"items": [keyed("K-1", "a", price="2.00")], "dry_run": True}
    ).json()
    assert body["results"][0]["errors"] == {
        "_idempotency_key": ["Idempotency key reused for a different item."]
    }


@pytest.mark.django_db
def test_item_keys_are_per_resource_and_per_user(api, tools, make_user, client_for):
    bulk(api, "post", "products", {"items": [keyed("K-1", "a")]})

    category = bulk(api, "post", "categories", {"items": [{"name": "C", "_idempotency_key": "a"}]})
    other = bulk(
        client_for(make_user(superuser=True)), "post", "products", {"items": [keyed("K-2", "a")]}
    )

    assert category.json()["results"][0]["status"] == "created"
    assert other.json()["results"][0]["status"] == "created"
    assert Category.objects.filter(name="C").exists()
    assert skus() == ["K-1", "K-2"]


@pytest.mark.django_db
def test_an_item_that_failed_can_be_sent_again(api, tools):
    failed = bulk(api, "post", "products", {"items": [keyed("K-1", "a", price="-1")]}).json()
    assert failed["results"][0]["status"] == "error"

    body = bulk(api, "post", "products", {"items": [keyed("K-1", "a")]}).json()

    assert body["results"][0]["status"] == "created"
    assert ItemIdempotencyRecord.objects.get().state == ItemIdempotencyRecord.DONE


@pytest.mark.django_db
def test_rolled_back_items_release_their_keys(api, tools):
    items = [keyed("K-1", "a"), new_product("BAD", price="-1")]
    body = bulk(api, "post", "products", {"items": items, "atomic": "all"}).json()
    assert body["results"][0]["status"] == "rolled_back"
    assert not ItemIdempotencyRecord.objects.exists()

    again = bulk(api, "post", "products", {"items": [keyed("K-1", "a")]}).json()
    assert again["results"][0]["status"] == "created"


@pytest.mark.django_db
def test_a_key_repeated_inside_a_batch_is_the_later_items_error(api, tools):
    body = bulk(api, "post", "products", {"items": [keyed("K-1", "a"), keyed("K-2", "a")]}).json()

    assert body["results"][0]["status"] == "created"
    assert body["results"][1]["errors"] == {
        "_idempotency_key": ["Duplicate _idempotency_key: item 0 of this batch has it."]
    }
    assert skus() == ["K-1"]


@pytest.mark.django_db
def test_a_dry_run_claims_nothing_and_reports_replays(api, tools):
    bulk(api, "post", "products", {"items": [keyed("K-1", "a")]})
    items = [keyed("K-1", "a"), keyed("K-2", "b")]

    body = bulk(api, "post", "products", {"items": items, "dry_run": True}).json()

    assert [r["status"] for r in body["results"]] == ["replayed", "created"]
    assert list(ItemIdempotencyRecord.objects.values_list("key", flat=True)) == ["a"]
    assert skus() == ["K-1"]


@pytest.mark.django_db
def test_a_key_another_request_holds_is_the_items_error(api, admin, tools):
    ItemIdempotencyRecord.objects.create(
        user=admin,
        resource="catalog.product",
        key="a",
        claim="00000000-0000-0000-0000-000000000001",
    )

    body = bulk(api, "post", "products", {"items": [keyed("K-1", "a"), new_product("K-2")]}).json()

    assert "is still running" in body["results"][0]["errors"]["_idempotency_key"][0]
    assert body["results"][1]["status"] == "created"
    assert skus() == ["K-2"]


@pytest.mark.django_db
def test_a_claim_abandoned_by_a_dead_request_is_taken_over(api, admin, tools):
    """A pending claim never committed its item (outcomes commit with their items), so
    once its request is surely gone the key is free."""
    ItemIdempotencyRecord.objects.create(
        user=admin,
        resource="catalog.product",
        key="a",
        claim="00000000-0000-0000-0000-000000000001",
        created_at=timezone.now() - STALE_AFTER - timedelta(seconds=1),
    )

    body = bulk(api, "post", "products", {"items": [keyed("K-1", "a")]}).json()

    assert body["results"][0]["status"] == "created"
    record = ItemIdempotencyRecord.objects.get()
    assert record.state == ItemIdempotencyRecord.DONE
    assert str(record.claim) != "00000000-0000-0000-0000-000000000001"
    assert record.object_id == str(body["results"][0]["id"])


@pytest.mark.django_db
def test_a_request_whose_claim_was_taken_over_cannot_commit_its_item(admin, tools):
    """The other side of a take-over: the first request, if it still ran, finds its claim
    gone inside the item's transaction and must roll the item back."""
    from bulkops.idempotency import ItemKeyLost
    from bulkops.results import CREATED, RowResult

    keys = ItemKeys.claim(
        user=admin,
        model=Product,
        mode="create",
        keys={0: "a"},
        items={0: new_product("K-1")},
        refs={},
        dry_run=False,
    )
    assert keys.claimed == {0: "a"}
    ItemIdempotencyRecord.objects.update(claim="00000000-0000-0000-0000-000000000002")

    with pytest.raises(ItemKeyLost):
        keys.record([RowResult(0, CREATED, id=1, data={})])
    assert ItemIdempotencyRecord.objects.get().state == ItemIdempotencyRecord.PENDING


@pytest.mark.django_db
def test_work_that_fails_releases_the_item_keys(api, tools, monkeypatch):
    def broken(self, *, items, options):
        raise RuntimeError("boom")

    monkeypatch.setattr(ProductViewSet, "perform_bulk_create", broken)
    api.raise_request_exception = False
    failed = bulk(api, "post", "products", {"items": [keyed("K-1", "a")]})

    assert failed.status_code == 500
    assert not ItemIdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_both_levels_together(api, tools):
    body = {"items": [keyed("K-1", "a")]}
    first = bulk(api, "post", "products", body, HTTP_IDEMPOTENCY_KEY="r").json()
    replay = bulk(api, "post", "products", body, HTTP_IDEMPOTENCY_KEY="r")
    fresh = bulk(api, "post", "products", body, HTTP_IDEMPOTENCY_KEY="r2").json()

    assert replay.json() == first
    assert first["results"][0]["status"] == "created"
    assert fresh["results"][0]["status"] == "replayed"
    assert skus() == ["K-1"]


# -- item keys and failures after commits -------------------------------------------------


def order(i: int, key: str | None = None) -> dict:
    item = {
        "customer": "ann@example.com",
        "product": "SKU-1",
        "quantity": i + 1,
        "placed_at": "2024-05-01T12:00:00Z",
    }
    if key is not None:
        item["_idempotency_key"] = key
    return item


@pytest.fixture
def catalog_for_orders(tools):
    CustomerFactory(email="ann@example.com")
    ProductFactory(sku="SKU-1", category=tools)


@pytest.fixture
def third_chunk_fails_once(monkeypatch):
    """The first bulk write of each viewset fails in its third chunk, inside that chunk's
    transaction (a bug in a hook, a lost connection); later requests go through."""
    failed: set[str] = set()

    def failing(mode):
        def perform(self, *, items, options):
            chunks = []
            name = type(self).__name__

            def after_write(action, objs):
                chunks.append(1)
                if len(chunks) == 3 and name not in failed:
                    failed.add(name)
                    raise RuntimeError("the third chunk failed")

            return self.run_bulk(mode=mode, items=items, options=options, after_write=after_write)

        return perform

    monkeypatch.setattr(OrderViewSet, "perform_bulk_create", failing("create"))
    monkeypatch.setattr(ProductViewSet, "perform_bulk_create", failing("create"))
    return failed


@pytest.mark.django_db
def test_orders_retried_after_a_partial_failure_are_not_created_twice(
    api, catalog_for_orders, third_chunk_fails_once
):
    api.raise_request_exception = False
    payload = {"items": [order(i, f"o-{i}") for i in range(6)], "chunk_size": 2}

    first = bulk(api, "post", "orders", payload).json()
    assert [r["status"] for r in first["results"]] == ["created"] * 4 + ["error"] * 2
    assert Order.objects.count() == 4

    retry = bulk(api, "post", "orders", payload).json()

    assert [r["status"] for r in retry["results"]] == ["replayed"] * 4 + ["created"] * 2
    assert [r["id"] for r in retry["results"][:4]] == [r["id"] for r in first["results"][:4]]
    assert retry["results"][0]["data"] == first["results"][0]["data"]
    assert Order.objects.count() == 6
    assert sorted(Order.objects.values_list("quantity", flat=True)) == [1, 2, 3, 4, 5, 6]
    states = set(ItemIdempotencyRecord.objects.values_list("state", flat=True))
    assert states == {ItemIdempotencyRecord.DONE}


@pytest.mark.django_db
@pytest.mark.parametrize("atomic", ["none", "chunk"])
def test_products_retried_after_a_partial_failure_replay_not_clash(
    api, tools, third_chunk_fails_once, atomic
):
    api.raise_request_exception = False
    items = [keyed(f"P-{i}", f"p-{i}") for i in range(6)]
    payload = {"items": items, "chunk_size": 2, "atomic": atomic}

    first = bulk(api, "post", "products", payload).json()
    assert first["summary"]["created"] == 4
    # The committed items' keys are outcomes; the others are free again.
    assert sorted(ItemIdempotencyRecord.objects.values_list("key", "state")) == [
        (f"p-{i}", ItemIdempotencyRecord.DONE) for i in range(4)
    ]

    retry = bulk(api, "post", "products", payload).json()

    assert [r["status"] for r in retry["results"]] == ["replayed"] * 4 + ["created"] * 2
    assert skus() == [f"P-{i}" for i in range(6)]


@pytest.mark.django_db
@pytest.mark.skipif(
    not ENGINE_IN_TRANSACTION,
    reason="needs the engine's in_transaction seam (issue 6): outcomes written with the items",
)
def test_an_items_outcome_commits_with_it_even_if_the_request_then_dies(
    api, catalog_for_orders, monkeypatch
):
    """The process fails after the engine committed (before anything else could record
    the outcomes): the retry still replays every committed item."""

    def die(self, result, *, recorded_by_engine):
        raise SystemExit("the worker was killed")

    monkeypatch.setattr(ItemKeys, "finish", die)
    payload = {"items": [order(i, f"o-{i}") for i in range(3)], "chunk_size": 2}
    with pytest.raises(SystemExit):
        bulk(api, "post", "orders", payload)
    assert Order.objects.count() == 3
    monkeypatch.undo()

    retry = bulk(api, "post", "orders", payload).json()

    assert [r["status"] for r in retry["results"]] == ["replayed"] * 3
    assert Order.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_item_key_apply_it_once(
    admin, catalog_for_orders, monkeypatch
):
    _need_postgresql()
    original = OrderViewSet.perform_bulk_create
    barrier = threading.Barrier(4)

    def slow(self, *, items, options):
        time.sleep(0.3)
        return original(self, items=items, options=options)

    monkeypatch.setattr(OrderViewSet, "perform_bulk_create", slow)
    statuses: list[str] = []

    def racer():
        try:
            client = APIClient()
            client.force_authenticate(admin)
            barrier.wait(5)
            body = bulk(client, "post", "orders", {"items": [order(0, "same")]}).json()
            statuses.append(body["results"][0]["status"])
        finally:
            connection.close()

    threads = [threading.Thread(target=racer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)

    assert Order.objects.count() == 1
    assert sorted(statuses).count("created") == 1
    assert set(statuses) <= {"created", "error", "replayed"} and len(statuses) == 4
