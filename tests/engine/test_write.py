"""Writing (``bulkops.engine.write``): what the database refuses after validation.

Rows that validate can still be refused when they are written: another writer takes
a unique key in between, a CHECK constraint the serializer does not know about, a
protected foreign key. Each refusal must land on its own row; the transaction mode
decides what happens to the others. These tests commit for real
(``transaction=True``) so a rolled-back chunk is seen as the database keeps it.
"""

from decimal import Decimal

import pytest
from rest_framework import serializers

from bulkops.engine import SourceRow, run_batch
from project.catalog.models import Product
from project.catalog.serializers import ProductSerializer
from tests.factories import OrderFactory, ProductFactory, ProductItemFactory

SKU_TAKEN = "product with this SKU already exists."
REFUSED = "The database refused this row: "


class LaxPriceSerializer(ProductSerializer):
    """ProductSerializer without the price >= 0 rule: only the database checks it."""

    price = serializers.DecimalField(max_digits=10, decimal_places=2)

    class Meta(ProductSerializer.Meta):
        pass


def skus():
    return sorted(Product.objects.values_list("sku", flat=True))


def chunk_statuses(n, chunk_size, culprits, atomic, success):
    """Statuses when ``culprits`` are refused at write time and every other row is valid."""
    bad_chunks = {c // chunk_size for c in culprits}
    statuses = []
    for i in range(n):
        if i in culprits:
            statuses.append("error")
        elif atomic == "all" or (atomic == "chunk" and i // chunk_size in bad_chunks):
            statuses.append("rolled_back")
        else:
            statuses.append(success)
    return statuses


# (rows, chunk_size, culprit): 120 rows in chunks of 60 take the COPY path on PostgreSQL.
SIZES = [(5, 2, 3), (120, 60, 77)]


# -- a unique key taken by another writer after validation -----------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("atomic", ["none", "chunk", "all"])
@pytest.mark.parametrize(("n", "chunk_size", "culprit"), SIZES, ids=["small", "copy"])
def test_unique_race_after_validation_is_reported_on_its_row(tools, atomic, n, chunk_size, culprit):
    rows = [ProductItemFactory(sku=f"R-{i:03d}") for i in range(n)]
    stages = []

    def on_progress(stage, done):
        stages.append((stage, done))
        if stage == "validate" and done == n:
            # Every row is validated; another writer takes one sku before the write.
            ProductFactory(sku=rows[culprit]["sku"], name="Competitor", category=tools)

    result = run_batch(
        serializer_class=ProductSerializer,
        rows=rows,
        mode="create",
        atomic=atomic,
        chunk_size=chunk_size,
        on_progress=on_progress,
    )

    statuses = chunk_statuses(n, chunk_size, {culprit}, atomic, "created")
    assert [r.status for r in result.results] == statuses
    assert result.results[culprit].errors == {"sku": [SKU_TAKEN]}
    assert result.results[culprit].id is None
    written = sorted(rows[i]["sku"] for i, s in enumerate(statuses) if s == "created")
    assert skus() == sorted([*written, rows[culprit]["sku"]])
    assert Product.objects.get(sku=rows[culprit]["sku"]).name == "Competitor"
    for row_result in result.results:
        if row_result.status == "created":
            assert Product.objects.get(pk=row_result.id).sku == rows[row_result.index]["sku"]
    assert result.summary["created"] == statuses.count("created")
    assert result.summary["failed"] == n - statuses.count("created")
    assert stages.index(("validate", n)) < min(
        [i for i, (stage, _) in enumerate(stages) if stage == "write"], default=len(stages)
    )


@pytest.mark.django_db(transaction=True)
def test_an_upsert_key_created_after_validation_is_updated(tools):
    ProductFactory(sku="U-OLD", category=tools)
    rows = [ProductItemFactory(sku="U-OLD", name="Updated"), ProductItemFactory(sku="U-NEW")]
    competitor = []

    def on_progress(stage, done):
        if stage == "validate":
            competitor.append(ProductFactory(sku="U-NEW", name="Competitor", category=tools))

    result = run_batch(
        serializer_class=ProductSerializer, rows=rows, mode="upsert", on_progress=on_progress
    )

    assert [(r.status, r.errors) for r in result.results] == [("updated", None), ("updated", None)]
    assert result.results[1].id == competitor[0].pk
    assert result.results[1].data["name"] == rows[1]["name"]
    assert Product.objects.get(sku="U-OLD").name == "Updated"
    assert Product.objects.get(sku="U-NEW").name == rows[1]["name"]


# -- a CHECK constraint the serializer does not enforce -------------------------------


def assert_price_check_refusal(errors):
    assert list(errors) == ["non_field_errors"]
    [message] = errors["non_field_errors"]
    assert message.startswith(REFUSED)
    assert "product_price_gte_0" in message


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("atomic", ["none", "chunk", "all"])
@pytest.mark.parametrize(("n", "chunk_size", "culprit"), SIZES, ids=["small", "copy"])
def test_check_constraint_refusal_on_create_is_that_rows_error(
    tools, atomic, n, chunk_size, culprit
):
    rows = [ProductItemFactory(sku=f"C-{i:03d}") for i in range(n)]
    rows[culprit]["price"] = "-5.00"

    result = run_batch(
        serializer_class=LaxPriceSerializer,
        rows=rows,
        mode="create",
        atomic=atomic,
        chunk_size=chunk_size,
    )

    statuses = chunk_statuses(n, chunk_size, {culprit}, atomic, "created")
    assert [r.status for r in result.results] == statuses
    assert_price_check_refusal(result.results[culprit].errors)
    assert skus() == sorted(rows[i]["sku"] for i, s in enumerate(statuses) if s == "created")
    assert not Product.objects.filter(price__lt=0).exists()


@pytest.mark.django_db(transaction=True)
def test_several_refusals_in_one_chunk_are_each_isolated(tools):
    rows = [ProductItemFactory(sku=f"M-{i:02d}") for i in range(16)]
    for culprit in (0, 7, 8, 15):
        rows[culprit]["price"] = "-1.00"

    result = run_batch(serializer_class=LaxPriceSerializer, rows=rows, mode="create")

    statuses = [r.status for r in result.results]
    assert [i for i, s in enumerate(statuses) if s == "error"] == [0, 7, 8, 15]
    assert statuses.count("created") == 12
    for culprit in (0, 7, 8, 15):
        assert_price_check_refusal(result.results[culprit].errors)
    assert Product.objects.count() == 12
    ids = [r.id for r in result.results if r.status == "created"]
    assert sorted(ids) == sorted(Product.objects.values_list("pk", flat=True))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("atomic", ["none", "chunk", "all"])
def test_check_constraint_refusal_on_update_is_that_rows_error(tools, atomic):
    products = [
        ProductFactory(sku=f"E-{i}", category=tools, price=Decimal("10.00")) for i in range(5)
    ]
    rows = [{"sku": f"E-{i}", "price": f"{i}.25"} for i in range(5)]
    rows[1]["price"] = "-3.00"

    result = run_batch(
        serializer_class=LaxPriceSerializer, rows=rows, mode="update", atomic=atomic, chunk_size=2
    )

    statuses = chunk_statuses(5, 2, {1}, atomic, "updated")
    assert [r.status for r in result.results] == statuses
    assert_price_check_refusal(result.results[1].errors)
    prices = dict(Product.objects.values_list("sku", "price"))
    for i, product in enumerate(products):
        written = statuses[i] == "updated"
        assert prices[product.sku] == (Decimal(f"{i}.25") if written else Decimal("10.00"))


# -- protected foreign keys -------------------------------------------------------------


@pytest.fixture
def ordered_products(tools):
    """E-0 .. E-4; orders refer to E-1 (twice) and E-3."""
    products = [ProductFactory(sku=f"E-{i}", category=tools) for i in range(5)]
    OrderFactory(product=products[1])
    OrderFactory(product=products[1])
    OrderFactory(product=products[3])
    return products


PROTECTED = {
    1: {"non_field_errors": ["Cannot delete E-1: orders still refer to it."]},
    3: {"non_field_errors": ["Cannot delete E-3: orders still refer to it."]},
}


def delete_all(products, atomic, chunk_size):
    rows = [SourceRow({"sku": p.sku}, row=i + 2) for i, p in enumerate(products)]
    return run_batch(
        serializer_class=ProductSerializer,
        rows=rows,
        mode="delete",
        atomic=atomic,
        chunk_size=chunk_size,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("atomic", "chunk_size"), [("none", 2), ("none", 5), ("chunk", 2), ("all", 2), ("all", 5)]
)
def test_delete_of_a_product_an_order_refers_to_fails_on_its_row(
    ordered_products, atomic, chunk_size
):
    result = delete_all(ordered_products, atomic, chunk_size)

    statuses = chunk_statuses(5, chunk_size, {1, 3}, atomic, "deleted")
    assert [r.status for r in result.results] == statuses
    assert {i: result.results[i].errors for i in (1, 3)} == PROTECTED
    kept = {p.sku for i, p in enumerate(ordered_products) if statuses[i] != "deleted"}
    assert set(skus()) == kept
    deleted = [r for r in result.results if r.status == "deleted"]
    assert [r.id for r in deleted] == [ordered_products[r.index].pk for r in deleted]
    assert [r.row for r in result.results] == [2, 3, 4, 5, 6]


@pytest.mark.django_db(transaction=True)
def test_atomic_all_reports_the_refusals_of_every_chunk(ordered_products):
    """The batch is doomed at the first refusal, but every refused row is named."""
    hooked = []

    result = run_batch(
        serializer_class=ProductSerializer,
        rows=[{"sku": p.sku} for p in ordered_products],
        mode="delete",
        atomic="all",
        chunk_size=2,
        after_write=lambda action, objs: hooked.append([o.sku for o in objs]),
    )

    assert [r.status for r in result.results] == chunk_statuses(5, 2, {1, 3}, "all", "deleted")
    assert {i: result.results[i].errors for i in (1, 3)} == PROTECTED
    assert skus() == ["E-0", "E-1", "E-2", "E-3", "E-4"]
    assert hooked == []  # the first chunk was refused: no hook for a doomed batch


# -- values survive the bulk statement (COPY on PostgreSQL from 50 rows) ------------------


@pytest.mark.django_db
@pytest.mark.parametrize("n", [3, 60], ids=["insert", "copy"])
def test_text_and_defaults_are_written_exactly(tools, n):
    awkward = [
        "tab\there",
        "new\nline",
        "back\\slash",
        'quote"s',
        "semi;colon,comma",
        "\\N",
        "ünïcødé ✓",
        "  inner  spaces",
        "'single'",
        "%(s)s",
    ]
    rows = []
    for i in range(n):
        item = ProductItemFactory(sku=f"T-{i:02d}", name=awkward[i % len(awkward)], price="0.10")
        del item["quantity"]
        if i % 2:
            item.update(active=False, released="2024-02-29", quantity=i)
        rows.append(item)

    result = run_batch(serializer_class=ProductSerializer, rows=rows, mode="create")

    assert result.summary["created"] == n
    stored = {p.sku: p for p in Product.objects.all()}
    for i, item in enumerate(rows):
        product = stored[item["sku"]]
        assert product.pk == result.results[i].id
        assert product.name == awkward[i % len(awkward)].strip()
        assert product.price == Decimal("0.10")
        assert product.category == tools
        if i % 2:
            assert (product.active, str(product.released), product.quantity) == (
                False,
                "2024-02-29",
                i,
            )
        else:
            # Fields left out take the model's defaults.
            assert (product.active, product.released, product.quantity) == (True, None, 0)


@pytest.mark.django_db
@pytest.mark.parametrize("n", [3, 60], ids=["insert", "copy"])
def test_orders_are_written_with_their_relations_and_aware_datetimes(n):
    from datetime import UTC, datetime

    from project.catalog.models import Order
    from project.catalog.serializers import OrderSerializer
    from tests.factories import CustomerFactory

    customers = [CustomerFactory(email=f"c{i}@example.com") for i in range(3)]
    products = [ProductFactory(sku=f"P-{i}") for i in range(2)]
    rows = [
        {
            "customer": f"c{i % 3}@example.com",
            "product": f"P-{i % 2}",
            "quantity": i + 1,
            "placed_at": f"2024-05-01T{i % 24:02d}:30:00+02:00",
        }
        for i in range(n)
    ]

    result = run_batch(serializer_class=OrderSerializer, rows=rows, mode="create")

    assert result.summary["created"] == n
    orders = {o.pk: o for o in Order.objects.all()}
    for i, row_result in enumerate(result.results):
        order = orders[row_result.id]
        assert order.customer == customers[i % 3]
        assert order.product == products[i % 2]
        assert order.quantity == i + 1
        hour = (i % 24 - 2) % 24
        day = 1 if i % 24 >= 2 else 30
        month = 5 if i % 24 >= 2 else 4
        assert order.placed_at == datetime(2024, month, day, hour, 30, tzinfo=UTC)


# -- the database changed between validation and the write (same connection: any backend) --


@pytest.fixture
def stock(tools):
    return [ProductFactory(sku=f"E-{i}", category=tools, price=Decimal("10.00")) for i in range(3)]


def _validated(mode, rows, **options):
    from bulkops.engine import Batch

    batch = Batch(serializer_class=ProductSerializer, mode=mode, **options)
    return batch, batch.validate_chunk(0, rows)


@pytest.mark.django_db
def test_an_update_target_deleted_after_validation_is_not_reported_updated(stock):
    batch, staged = _validated("update", [{"sku": p.sku, "name": "New"} for p in stock])
    Product.objects.filter(sku="E-1").delete()

    results = batch.write_chunk(staged)

    assert [(r.status, r.errors) for r in results] == [
        ("updated", None),
        ("error", {"sku": ["No product with sku=E-1."]}),
        ("updated", None),
    ]
    assert sorted(Product.objects.values_list("name", flat=True)) == ["New", "New"]


@pytest.mark.django_db
def test_a_delete_target_deleted_after_validation_is_not_reported_deleted(stock):
    batch, staged = _validated("delete", [{"id": p.pk} for p in stock])
    Product.objects.filter(sku="E-2").delete()

    results = batch.write_chunk(staged)

    assert [(r.status, r.errors) for r in results] == [
        ("deleted", None),
        ("deleted", None),
        ("error", {"id": [f"No product with id={stock[2].pk}."]}),
    ]


@pytest.mark.django_db
def test_an_upsert_key_created_after_validation_is_updated_on_any_database(stock, tools):
    batch, staged = _validated(
        "upsert", [ProductItemFactory(sku="NEW", name="Mine"), ProductItemFactory(sku="E-0")]
    )
    theirs = ProductFactory(sku="NEW", name="Theirs", category=tools)
    Product.objects.filter(sku="E-0").delete()

    results = batch.write_chunk(staged)

    assert [(r.status, r.id) for r in results][0] == ("updated", theirs.pk)
    assert results[1].status == "created" and results[1].id != stock[0].pk
    assert Product.objects.get(sku="NEW").name == "Mine"
    assert Product.objects.get(pk=results[1].id).sku == "E-0"


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["create", "upsert", "update"])
def test_a_related_object_deleted_after_validation_is_that_rows_error(stock, mode):
    from project.catalog.models import Category

    Category.objects.create(name="Brief")
    rows = [ProductItemFactory(sku=f"R-{i}") for i in range(3)]
    if mode == "update":
        rows = [{"sku": p.sku, "category": "Tools"} for p in stock]
    rows[1]["category"] = "Brief"
    batch, staged = _validated(mode, rows)
    Category.objects.filter(name="Brief").delete()

    results = batch.write_chunk(staged)

    assert [r.status for r in results] == [
        "updated" if mode == "update" else "created",
        "error",
        "updated" if mode == "update" else "created",
    ]
    assert results[1].errors == {"category": ["Object with name=Brief does not exist."]}


@pytest.mark.django_db
def test_a_delete_of_a_product_an_order_came_to_refer_to_is_refused(stock):
    batch, staged = _validated("delete", [{"sku": p.sku} for p in stock])
    OrderFactory(product=stock[0])

    results = batch.write_chunk(staged)

    assert results[0].errors == {
        "non_field_errors": ["Cannot delete E-0: orders still refer to it."]
    }
    assert [r.status for r in results[1:]] == ["deleted", "deleted"]
    assert list(Product.objects.values_list("sku", flat=True)) == ["E-0"]
