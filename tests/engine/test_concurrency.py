"""The write under a concurrent writer: a second connection changes the rows between
validation and the write, or while the write runs (PostgreSQL).

The other writer is a thread with its own connection. It makes its change in a
transaction and holds it open while this one writes, then commits: the write waits
for its locks and must then see the change (a target gone, a key taken, a related
object deleted) and report it on the row, never as done.
"""

import json
import threading
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction

from bulkops.engine import Batch, StagedChunk, run_batch
from project.catalog.models import Category, Order, Product
from project.catalog.serializers import ProductSerializer
from tests.factories import CategoryFactory, OrderFactory, ProductFactory, ProductItemFactory

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="a second writer needs PostgreSQL"
    ),
    pytest.mark.django_db(transaction=True),
]

HOLD_SECONDS = 0.5


@contextmanager
def other_writer(change):
    """Run ``change()`` in another connection's transaction; it commits HOLD_SECONDS after
    the block starts, so the block's write first has to wait for it."""
    done = threading.Event()
    release = threading.Event()
    failure = []

    def run():
        try:
            with transaction.atomic():
                change()
                done.set()
                release.wait(10)
        except Exception as exc:  # pragma: no cover - reported below
            failure.append(exc)
            done.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    assert done.wait(10), "the other writer did not start"
    assert not failure, failure
    timer = threading.Timer(HOLD_SECONDS, release.set)
    timer.start()
    try:
        yield
    finally:
        release.set()
        thread.join(10)
        timer.cancel()
    assert not failure, failure


@pytest.fixture
def stock():
    tools = CategoryFactory(name="Tools")
    return [ProductFactory(sku=f"E-{i}", category=tools, price=Decimal("10.00")) for i in range(4)]


def statuses(results):
    return [(r.status, r.errors) for r in results]


@pytest.mark.parametrize("by", ["sku", "id"])
@pytest.mark.parametrize("size", [3, 60], ids=["few", "many"])
def test_an_update_whose_target_is_deleted_meanwhile_is_that_rows_error(stock, by, size):
    products = stock + [
        ProductFactory(sku=f"X-{i:02d}", category=stock[0].category) for i in range(size - 3)
    ]
    rows = [{by: getattr(p, by), "name": f"New {p.sku}"} for p in products[:size]]
    batch = Batch(serializer_class=ProductSerializer, mode="update", atomic="none")
    staged = batch.validate_chunk(0, rows)
    victim = products[1]

    with other_writer(lambda: Product.objects.filter(pk=victim.pk).delete()):
        results = batch.write_chunk(staged)

    shown = {"sku": f"sku={victim.sku}", "id": f"id={victim.pk}"}[by]
    assert results[1].status == "error"
    assert results[1].errors == {by: [f"No product with {shown}."]}
    assert results[1].id is None
    done = [r for i, r in enumerate(results) if i != 1]
    assert {r.status for r in done} == {"updated"}
    names = dict(Product.objects.values_list("pk", "name"))
    assert victim.pk not in names
    assert all(names[r.id] == f"New {products[r.index].sku}" for r in done)


@pytest.mark.parametrize("atomic", ["none", "chunk"])
def test_a_delete_whose_target_is_deleted_meanwhile_is_that_rows_error(stock, atomic):
    batch = Batch(serializer_class=ProductSerializer, mode="delete", atomic=atomic)
    staged = batch.validate_chunk(0, [{"sku": p.sku} for p in stock])

    with other_writer(lambda: Product.objects.filter(sku="E-2").delete()):
        results = batch.write_chunk(staged)

    assert results[2].errors == {"sku": ["No product with sku=E-2."]}
    if atomic == "none":
        assert [r.status for r in results] == ["deleted", "deleted", "error", "deleted"]
        assert Product.objects.count() == 0
    else:
        assert [r.status for r in results] == ["rolled_back", "rolled_back", "error", "rolled_back"]
        assert sorted(Product.objects.values_list("sku", flat=True)) == ["E-0", "E-1", "E-3"]


@pytest.mark.parametrize("size", [2, 60], ids=["few", "many"])
def test_an_upsert_key_created_meanwhile_becomes_an_update(stock, size):
    rows = [ProductItemFactory(sku=f"U-{i:02d}", name=f"Mine {i}") for i in range(size)]
    rows.append({"sku": "E-0", "name": "Mine E-0", "category": "Tools", "price": "3.00"})
    batch = Batch(serializer_class=ProductSerializer, mode="upsert", with_data=True)
    staged = batch.validate_chunk(0, rows)
    assert [r.action for r in staged.rows] == ["create"] * size + ["update"]
    theirs = []

    def create():
        theirs.append(ProductFactory(sku="U-01", name="Theirs", category=stock[0].category))

    with other_writer(create):
        results = batch.write_chunk(staged)

    assert results[1].status == "updated"
    assert results[1].id == theirs[0].pk
    assert results[1].data["name"] == "Mine 1"
    assert [r.status for r in results].count("created") == size - 1
    assert results[-1].status == "updated" and results[-1].id == stock[0].pk
    stored = {p.sku: p for p in Product.objects.all()}
    for r in results:
        assert stored[rows[r.index]["sku"]].pk == r.id
        assert stored[rows[r.index]["sku"]].name == rows[r.index]["name"]


def test_an_upsert_whose_target_is_deleted_meanwhile_creates_it_again(stock):
    rows = [{"sku": "E-1", "name": "Again", "category": "Tools", "price": "2.00"}]
    batch = Batch(serializer_class=ProductSerializer, mode="upsert", with_data=True)
    staged = batch.validate_chunk(0, rows)

    with other_writer(lambda: Product.objects.filter(sku="E-1").delete()):
        [result] = batch.write_chunk(staged)

    assert result.status == "created"
    product = Product.objects.get(sku="E-1")
    assert (result.id, product.name, product.quantity) == (product.pk, "Again", 0)
    assert result.id != stock[1].pk
    assert result.data == {
        "id": product.pk,
        "sku": "E-1",
        "name": "Again",
        "category": "Tools",
        "price": "2.00",
        "quantity": 0,
        "active": True,
        "released": None,
    }


@pytest.mark.parametrize("mode", ["create", "upsert"])
@pytest.mark.parametrize("size", [3, 60], ids=["few", "many"])
def test_a_related_object_deleted_meanwhile_is_that_rows_error(stock, mode, size):
    Category.objects.create(name="Brief")
    rows = [ProductItemFactory(sku=f"R-{i:02d}") for i in range(size)]
    rows[1]["category"] = "Brief"
    batch = Batch(serializer_class=ProductSerializer, mode=mode, atomic="none")
    staged = batch.validate_chunk(0, rows)

    with other_writer(lambda: Category.objects.filter(name="Brief").delete()):
        results = batch.write_chunk(staged)

    assert results[1].errors == {"category": ["Object with name=Brief does not exist."]}
    assert [r.status for r in results].count("created") == size - 1
    assert not Product.objects.filter(sku="R-01").exists()
    assert Product.objects.filter(sku__startswith="R-").count() == size - 1


def test_a_unique_key_taken_meanwhile_is_that_rows_error(stock):
    rows = [ProductItemFactory(sku=f"T-{i}") for i in range(3)]
    batch = Batch(serializer_class=ProductSerializer, mode="create")
    staged = batch.validate_chunk(0, rows)

    with other_writer(lambda: ProductFactory(sku="T-2", category=stock[0].category)):
        results = batch.write_chunk(staged)

    assert statuses(results)[2] == ("error", {"sku": ["product with this SKU already exists."]})
    assert [r.status for r in results[:2]] == ["created", "created"]


def test_an_update_that_takes_a_key_another_writer_took_meanwhile_is_that_rows_error(stock):
    batch = Batch(serializer_class=ProductSerializer, mode="update")
    staged = batch.validate_chunk(
        0, [{"sku": "E-0", "name": "ok"}, {"id": stock[1].pk, "sku": "Z"}]
    )

    with other_writer(lambda: ProductFactory(sku="Z", category=stock[0].category)):
        results = batch.write_chunk(staged)

    assert statuses(results) == [
        ("updated", None),
        ("error", {"sku": ["product with this SKU already exists."]}),
    ]


def test_a_chunk_written_twice_gives_identical_results(stock):
    """A retry of a chunk (a job's worker died before its commit) sees the same database
    the first attempt saw, and says the same."""
    rows = [
        {"sku": "E-0", "name": "Zero"},
        {"sku": "E-1", "name": "One"},
        {"sku": "E-2", "price": "-1"},
        {"sku": "E-3", "name": "Three"},
    ]
    batch = Batch(serializer_class=ProductSerializer, mode="update", with_data=True)
    data = json.dumps(batch.validate_chunk(0, rows).to_json())

    with other_writer(lambda: Product.objects.filter(sku="E-3").delete()):
        attempts = []
        for _ in range(2):
            with transaction.atomic():
                staged = StagedChunk.from_json(data, model=Product)
                attempts.append([r.as_dict() for r in batch.write_chunk(staged)])
                transaction.set_rollback(True)  # the first worker died here

    assert attempts[0] == attempts[1]
    assert [r["status"] for r in attempts[0]] == ["updated", "updated", "error", "error"]
    assert attempts[0][3]["errors"] == {"sku": ["No product with sku=E-3."]}
    assert Product.objects.get(sku="E-0").name == stock[0].name  # rolled back, both times


def test_a_dry_run_delete_of_a_protected_product_says_what_the_real_run_says(stock):
    OrderFactory(product=stock[1])
    rows = [{"sku": p.sku} for p in stock]

    dry = run_batch(serializer_class=ProductSerializer, rows=rows, mode="delete", dry_run=True)
    real = run_batch(serializer_class=ProductSerializer, rows=rows, mode="delete")

    message = {"non_field_errors": ["Cannot delete E-1: orders still refer to it."]}
    assert statuses(dry.results) == [
        ("deleted", None),
        ("error", message),
        ("deleted", None),
        ("deleted", None),
    ]
    assert statuses(real.results) == statuses(dry.results)
    assert list(Product.objects.values_list("sku", flat=True)) == ["E-1"]


def test_a_product_an_order_comes_to_refer_to_meanwhile_is_not_deleted(stock):
    batch = Batch(serializer_class=ProductSerializer, mode="delete")
    staged = batch.validate_chunk(0, [{"sku": p.sku} for p in stock])
    assert staged.invalid == 0

    def refer():
        # Another bulkops writer: its foreign keys are checked at once, so its order
        # holds the product (KEY SHARE) until it commits, and the delete waits for it.
        connection.cursor().execute("SET CONSTRAINTS ALL IMMEDIATE")
        OrderFactory(product=stock[2])

    with other_writer(refer):
        results = batch.write_chunk(staged)

    assert statuses(results)[2] == (
        "error",
        {"non_field_errors": ["Cannot delete E-2: orders still refer to it."]},
    )
    assert list(Product.objects.values_list("sku", flat=True)) == ["E-2"]
    assert Order.objects.get().product.sku == "E-2"
