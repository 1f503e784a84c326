"""Set-based validation (``bulkops.engine.validate``), driven through ``run_batch``.

Duplicates inside the batch, natural keys of related objects, objects to update
or delete, rows that are not objects, models without a natural key, and the proof
that validation costs a constant number of queries per chunk.
"""

import sqlite3
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bulkops.engine import SourceRow, run_batch
from bulkops.engine.validate import ChunkValidator
from project.catalog.models import Category, Order, Product
from project.catalog.serializers import OrderSerializer, ProductSerializer
from tests.factories import (
    CategoryFactory,
    CustomerFactory,
    OrderFactory,
    ProductFactory,
    ProductItemFactory,
)

SKU_TAKEN = "product with this SKU already exists."
REQUIRED = "This field is required."


def run(rows, mode="create", **options):
    return run_batch(serializer_class=ProductSerializer, rows=rows, mode=mode, **options)


def outcome(result):
    return [(r.status, r.errors) for r in result.results]


def duplicate(label):
    return f"Duplicate sku: {label} of this batch has the same value."


def same_object(label):
    return f"The same object is named by {label} of this batch."


def skus():
    return sorted(Product.objects.values_list("sku", flat=True))


# -- duplicates inside the batch ---------------------------------------------------


@pytest.mark.django_db
def test_duplicate_dict_rows_both_fail_naming_each_other(tools):
    rows = [
        ProductItemFactory(sku="DUP"),
        ProductItemFactory(sku="OK"),
        ProductItemFactory(sku="DUP"),
    ]

    result = run(rows, atomic="none")

    assert outcome(result) == [
        ("error", {"sku": [duplicate("item 2")]}),
        ("created", None),
        ("error", {"sku": [duplicate("item 0")]}),
    ]
    assert skus() == ["OK"]


@pytest.mark.django_db
def test_duplicate_file_rows_name_each_other_by_row_number(tools):
    rows = [
        SourceRow(ProductItemFactory(sku="DUP"), row=2),
        SourceRow(ProductItemFactory(sku="OK"), row=3),
        SourceRow(ProductItemFactory(sku="DUP"), row=4),
    ]

    result = run(rows, atomic="none")

    assert outcome(result) == [
        ("error", {"sku": [duplicate("row 4")]}),
        ("created", None),
        ("error", {"sku": [duplicate("row 2")]}),
    ]
    assert [r.row for r in result.results] == [2, 3, 4]


@pytest.mark.django_db
def test_three_rows_with_one_sku_all_fail(tools):
    rows = [ProductItemFactory(sku="DUP") for _ in range(3)]

    result = run(rows, atomic="none")

    assert outcome(result) == [
        ("error", {"sku": [duplicate("item 1"), duplicate("item 2")]}),
        ("error", {"sku": [duplicate("item 0")]}),
        ("error", {"sku": [duplicate("item 0")]}),
    ]
    assert skus() == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("atomic", "statuses", "written"),
    [
        (
            "none",
            ["error", "created", "created", "created", "created", "error"],
            ["D-1", "D-2", "D-3", "D-4"],
        ),
        (
            "chunk",
            ["error", "rolled_back", "created", "created", "rolled_back", "error"],
            ["D-2", "D-3"],
        ),
        ("all", ["error", "rolled_back", "rolled_back", "rolled_back", "rolled_back", "error"], []),
    ],
)
def test_duplicates_in_different_chunks_are_found(tools, atomic, statuses, written):
    rows = [ProductItemFactory(sku=f"D-{i}") for i in range(6)]
    rows[5]["sku"] = "D-0"

    result = run(rows, atomic=atomic, chunk_size=2)

    assert [r.status for r in result.results] == statuses
    assert result.results[0].errors == {"sku": [duplicate("item 5")]}
    assert result.results[5].errors == {"sku": [duplicate("item 0")]}
    assert skus() == written


@pytest.mark.django_db
def test_duplicate_file_rows_in_different_chunks_name_row_numbers(tools):
    rows = [SourceRow(ProductItemFactory(sku=f"D-{i}"), row=i + 2) for i in range(6)]
    rows[5].values["sku"] = "D-0"

    result = run(rows, atomic="none", chunk_size=2)

    assert result.results[0].errors == {"sku": [duplicate("row 7")]}
    assert result.results[5].errors == {"sku": [duplicate("row 2")]}
    assert [r.status for r in result.results[1:5]] == ["created"] * 4


@pytest.mark.django_db
def test_duplicate_new_sku_in_upsert_fails_both_rows(tools):
    rows = [ProductItemFactory(sku="NEW"), ProductItemFactory(sku="NEW")]

    result = run(rows, mode="upsert")

    assert outcome(result) == [
        ("error", {"sku": [duplicate("item 1")]}),
        ("error", {"sku": [duplicate("item 0")]}),
    ]
    assert skus() == []


@pytest.mark.django_db
def test_an_invalid_row_does_not_make_its_twin_a_duplicate(tools):
    rows = [ProductItemFactory(sku="TWIN", price="-1"), ProductItemFactory(sku="TWIN")]

    result = run(rows, atomic="none")

    assert outcome(result) == [
        ("error", {"price": ["Ensure this value is greater than or equal to 0."]}),
        ("created", None),
    ]


# -- related objects by natural key -------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("category", "errors"),
    [
        ("Nope", ["Object with name=Nope does not exist."]),
        ("tools", ["Object with name=tools does not exist."]),  # exists only as "Tools"
        ("TOOLS", ["Object with name=TOOLS does not exist."]),
        (123, ["Object with name=123 does not exist."]),
        ({"name": "Tools"}, ["Invalid value."]),
        (["Tools"], ["Invalid value."]),
        (None, ["This field may not be null."]),
        ("", ["This field may not be null."]),
    ],
)
def test_related_object_that_cannot_be_resolved_is_that_rows_error(tools, category, errors):
    rows = [ProductItemFactory(sku="A"), ProductItemFactory(sku="B", category=category)]

    result = run(rows, atomic="none")

    assert outcome(result) == [("created", None), ("error", {"category": errors})]
    assert Product.objects.get(sku="A").category == tools
    assert skus() == ["A"]


@pytest.mark.django_db
def test_missing_related_field_is_required(tools):
    row = ProductItemFactory(sku="A")
    del row["category"]

    assert outcome(run([row])) == [("error", {"category": [REQUIRED]})]


@pytest.mark.django_db
def test_related_errors_come_with_the_rows_other_field_errors(tools):
    row = ProductItemFactory(sku="A", category="Nope", price="-1", quantity="many")

    [item] = run([row]).results

    assert item.errors == {
        "category": ["Object with name=Nope does not exist."],
        "price": ["Ensure this value is greater than or equal to 0."],
        "quantity": ["A valid integer is required."],
    }


@pytest.mark.django_db
def test_categories_resolve_to_the_right_objects_across_chunks():
    garden = CategoryFactory(name="Garden")
    tools = CategoryFactory(name="Tools")
    rows = [ProductItemFactory(sku=f"C-{i}", category=["Tools", "Garden"][i % 2]) for i in range(5)]

    result = run(rows, chunk_size=2)

    assert [r.status for r in result.results] == ["created"] * 5
    by_sku = {p.sku: p.category for p in Product.objects.select_related("category")}
    assert by_sku == {"C-0": tools, "C-1": garden, "C-2": tools, "C-3": garden, "C-4": tools}
    assert [r.data["category"] for r in result.results] == ["Tools", "Garden"] * 2 + ["Tools"]


# -- uniqueness against the database --------------------------------------------------


@pytest.mark.django_db
def test_create_of_an_existing_sku_is_refused_with_drfs_wording(products):
    rows = [ProductItemFactory(sku="E-1"), ProductItemFactory(sku="FRESH")]

    result = run(rows, atomic="none")

    assert outcome(result) == [("error", {"sku": [SKU_TAKEN]}), ("created", None)]
    assert Product.objects.get(sku="E-1").name == "Existing 1"


# -- targets of update / upsert / delete ----------------------------------------------


@pytest.mark.django_db
def test_update_of_missing_objects_fails_on_that_row(products):
    missing_id = max(p.pk for p in products) + 1000
    rows = [
        {"id": missing_id, "price": "1.00"},
        {"sku": "NOPE", "price": "1.00"},
        {"price": "1.00"},
        {"id": "abc", "price": "1.00"},
        {"sku": "E-0", "price": "1.00"},
    ]

    result = run(rows, mode="update", atomic="none")

    assert outcome(result) == [
        ("error", {"id": [f"No product with id={missing_id}."]}),
        ("error", {"sku": ["No product with sku=NOPE."]}),
        ("error", {"non_field_errors": ["Each item must name its object by 'id' or by 'sku'."]}),
        ("error", {"id": ["A valid integer is required."]}),
        ("updated", None),
    ]
    assert Product.objects.get(sku="E-0").price == Decimal("1.00")


@pytest.mark.django_db
def test_update_names_the_object_by_id_and_may_change_its_sku(products):
    target = products[2]
    result = run([{"id": target.pk, "sku": "RENAMED", "name": "Renamed"}], mode="update")

    [item] = result.results
    assert (item.status, item.id) == ("updated", target.pk)
    assert item.data == {
        "id": target.pk,
        "sku": "RENAMED",
        "name": "Renamed",
        "category": "Tools",
        "price": "10.00",
        "quantity": 5,
        "active": True,
        "released": None,
    }
    target.refresh_from_db()
    assert (target.sku, target.name) == ("RENAMED", "Renamed")
    assert not Product.objects.filter(sku="E-2").exists()


@pytest.mark.django_db
def test_update_that_changes_only_price_leaves_every_other_field(products):
    def state():
        return list(Product.objects.order_by("pk").values())

    before = state()
    result = run([{"sku": "E-3", "price": "77.70"}], mode="update")

    assert outcome(result) == [("updated", None)]
    after = state()
    for old, new in zip(before, after, strict=True):
        if old["sku"] == "E-3":
            assert new == {**old, "price": Decimal("77.70")}
        else:
            assert new == old


@pytest.mark.django_db
def test_update_to_an_sku_that_exists_is_a_unique_error(products):
    rows = [
        {"id": products[0].pk, "sku": "E-1"},
        {"id": products[2].pk, "sku": "E-2", "name": "Same sku kept"},
    ]

    result = run(rows, mode="update", atomic="none")

    assert outcome(result) == [("error", {"sku": [SKU_TAKEN]}), ("updated", None)]
    assert skus() == ["E-0", "E-1", "E-2", "E-3", "E-4"]
    assert Product.objects.get(sku="E-2").name == "Same sku kept"


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["update", "upsert", "delete"])
def test_two_rows_naming_the_same_object_both_fail(products, mode):
    extra = {} if mode == "delete" else {"name": "X", "category": "Tools", "price": "1.00"}
    rows = [{"sku": "E-1", **extra}, {"sku": "E-2", **extra}, {"sku": "E-1", **extra}]

    result = run(rows, mode=mode, atomic="none")

    assert outcome(result) == [
        ("error", {"sku": [same_object("item 2")]}),
        ({"update": "updated", "upsert": "updated", "delete": "deleted"}[mode], None),
        ("error", {"sku": [same_object("item 0")]}),
    ]
    assert Product.objects.filter(sku="E-1").exists()


@pytest.mark.django_db
def test_two_rows_naming_the_same_object_by_id_both_fail(products):
    pk = products[1].pk
    rows = [{"id": pk, "price": "1"}, {"id": pk, "price": "2"}]

    result = run(rows, mode="update", chunk_size=1)

    assert outcome(result) == [
        ("error", {"id": [same_object("item 1")]}),
        ("error", {"id": [same_object("item 0")]}),
    ]
    assert Product.objects.get(pk=pk).price == Decimal("10.00")


@pytest.mark.django_db
def test_same_object_by_id_and_by_sku_reports_each_row_on_its_own_key(products):
    rows = [{"id": products[1].pk, "price": "1"}, {"sku": "E-1", "price": "2"}]

    result = run(rows, mode="update", chunk_size=1)

    assert outcome(result) == [
        ("error", {"id": [same_object("item 1")]}),
        ("error", {"sku": [same_object("item 0")]}),
    ]
    assert Product.objects.get(sku="E-1").price == Decimal("10.00")


@pytest.mark.django_db
def test_upsert_creates_and_updates_in_input_order(products):
    rows = [
        ProductItemFactory(sku="U-0"),
        ProductItemFactory(sku="E-3", name="Upserted 3", price="3.00"),
        ProductItemFactory(sku="U-2"),
        ProductItemFactory(sku="E-0", name="Upserted 0", price="0.00"),
    ]

    result = run(rows, mode="upsert", chunk_size=3)

    assert [r.status for r in result.results] == ["created", "updated", "created", "updated"]
    assert [r.id for r in result.results] == [
        Product.objects.get(sku="U-0").pk,
        products[3].pk,
        Product.objects.get(sku="U-2").pk,
        products[0].pk,
    ]
    assert result.summary["created"] == 2 and result.summary["updated"] == 2
    assert Product.objects.get(sku="E-3").name == "Upserted 3"
    assert Product.objects.get(sku="E-0").price == Decimal("0.00")
    assert Product.objects.count() == 7


@pytest.mark.django_db
@pytest.mark.parametrize("sku", [None, ""], ids=["absent", "empty"])
def test_upsert_row_without_sku_is_that_rows_error(products, sku):
    row = ProductItemFactory()
    if sku is None:
        del row["sku"]
    else:
        row["sku"] = sku

    result = run([row, ProductItemFactory(sku="U-1")], mode="upsert", atomic="none")

    assert outcome(result) == [("error", {"sku": [REQUIRED]}), ("created", None)]


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["update", "upsert", "delete"])
def test_natural_key_is_matched_as_the_serializer_cleans_it(products, mode):
    """DRF trims text: ' E-1 ' names E-1, it is not a new sku clashing with it."""
    row = ProductItemFactory(sku=" E-1 ", name="Trimmed", price="4.00")

    result = run([row], mode=mode)

    assert outcome(result) == [({"delete": "deleted"}.get(mode, "updated"), None)]
    assert result.results[0].id == products[1].pk
    if mode == "delete":
        assert skus() == ["E-0", "E-2", "E-3", "E-4"]
    else:
        assert Product.objects.get(sku="E-1").name == "Trimmed"
        assert Product.objects.count() == 5


@pytest.mark.django_db
def test_delete_by_id_and_by_sku_and_missing_objects(products):
    missing_id = max(p.pk for p in products) + 1000
    rows = [
        {"id": products[0].pk},
        {"sku": "E-3"},
        {"sku": "NOPE"},
        {"id": missing_id},
        {},
    ]

    result = run(rows, mode="delete", atomic="none")

    assert outcome(result) == [
        ("deleted", None),
        ("deleted", None),
        ("error", {"sku": ["No product with sku=NOPE."]}),
        ("error", {"id": [f"No product with id={missing_id}."]}),
        ("error", {"non_field_errors": ["Each item must name its object by 'id' or by 'sku'."]}),
    ]
    assert [r.id for r in result.results[:2]] == [products[0].pk, products[3].pk]
    assert skus() == ["E-1", "E-2", "E-4"]


@pytest.mark.django_db
def test_queryset_bounds_which_objects_may_be_updated(products):
    queryset = Product.objects.exclude(sku="E-1")

    result = run(
        [{"sku": "E-1", "price": "1"}, {"sku": "E-2", "price": "2"}],
        mode="update",
        atomic="none",
        queryset=queryset,
    )

    assert outcome(result) == [
        ("error", {"sku": ["No product with sku=E-1."]}),
        ("updated", None),
    ]
    assert Product.objects.get(sku="E-1").price == Decimal("10.00")


# -- rows that are not objects ------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["create", "update", "upsert", "delete"])
def test_rows_that_are_not_dictionaries_fail_on_their_own(products, mode):
    good = {
        "create": ProductItemFactory(sku="G-1"),
        "update": {"sku": "E-0", "price": "1"},
        "upsert": ProductItemFactory(sku="E-0"),
        "delete": {"sku": "E-0"},
    }[mode]
    rows = ["E-1", ["E-2"], None, 7, good]

    result = run(rows, mode=mode, atomic="none")

    def expected(kind):
        return (
            "error",
            {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]},
        )

    assert outcome(result) == [
        expected("str"),
        expected("list"),
        expected("NoneType"),
        expected("int"),
        (
            {"create": "created", "update": "updated", "upsert": "updated", "delete": "deleted"}[
                mode
            ],
            None,
        ),
    ]
    assert result.results[0].values == "E-1"


@pytest.mark.django_db
def test_a_row_the_reader_already_failed_is_reported_with_the_readers_errors(tools):
    rows = [
        SourceRow(ProductItemFactory(sku="R-1"), row=2),
        SourceRow(
            {"sku": "R-2"}, row=3, errors={"non_field_errors": ["Row has 9 cells; header has 6."]}
        ),
    ]

    result = run(rows, atomic="none")

    assert outcome(result) == [
        ("created", None),
        ("error", {"non_field_errors": ["Row has 9 cells; header has 6."]}),
    ]
    assert skus() == ["R-1"]


# -- a model without a natural key ---------------------------------------------------


@pytest.fixture
def order_world():
    customer = CustomerFactory(email="ann@example.com")
    product = ProductFactory(sku="SKU-1")
    return customer, product


def order_item(**overrides):
    return {
        "customer": "ann@example.com",
        "product": "SKU-1",
        "quantity": 2,
        "placed_at": "2024-05-01T12:00:00Z",
        **overrides,
    }


@pytest.mark.django_db
def test_order_create_resolves_customer_by_email_and_product_by_sku(order_world):
    customer, product = order_world
    rows = [
        order_item(),
        order_item(customer="bob@example.com"),
        order_item(product="SKU-404", quantity=0),
        order_item(quantity=5),
    ]

    result = run_batch(serializer_class=OrderSerializer, rows=rows, mode="create", atomic="none")

    assert outcome(result) == [
        ("created", None),
        ("error", {"customer": ["Object with email=bob@example.com does not exist."]}),
        (
            "error",
            {
                "product": ["Object with sku=SKU-404 does not exist."],
                "quantity": ["Ensure this value is greater than or equal to 1."],
            },
        ),
        ("created", None),
    ]
    orders = list(Order.objects.order_by("pk"))
    assert [(o.customer, o.product, o.quantity) for o in orders] == [
        (customer, product, 2),
        (customer, product, 5),
    ]
    assert [r.id for r in result.results if r.status == "created"] == [o.pk for o in orders]
    assert result.results[0].data["customer"] == "ann@example.com"
    assert result.results[0].data["product"] == "SKU-1"


@pytest.mark.django_db
def test_order_upsert_needs_a_natural_key(order_world):
    with pytest.raises(ImproperlyConfigured) as raised:
        run_batch(serializer_class=OrderSerializer, rows=[order_item()], mode="upsert")

    assert str(raised.value) == (
        "Upsert needs a natural key for Order: set natural_key = ('field',) "
        "on OrderSerializer.Meta."
    )
    assert Order.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("rows", [[], ["not an object"]], ids=["empty", "no-dict-rows"])
def test_order_upsert_is_refused_whatever_the_rows(order_world, rows):
    """Misconfiguration fails loudly, not only when a row happens to reach the lookup."""
    with pytest.raises(ImproperlyConfigured, match="Upsert needs a natural key for Order"):
        run_batch(serializer_class=OrderSerializer, rows=rows, mode="upsert")


@pytest.mark.django_db
def test_order_update_names_orders_by_id_only(order_world):
    order = OrderFactory(customer=order_world[0], product=order_world[1], quantity=1)

    result = run_batch(
        serializer_class=OrderSerializer,
        rows=[{"id": order.pk, "quantity": 9}, {"quantity": 3}],
        mode="update",
        atomic="none",
    )

    assert outcome(result) == [
        ("updated", None),
        ("error", {"non_field_errors": ["Each item must name its object by 'id'."]}),
    ]
    order.refresh_from_db()
    assert order.quantity == 9


@pytest.mark.django_db
def test_natural_key_that_is_a_relation_is_refused(order_world):
    with pytest.raises(
        ImproperlyConfigured, match="natural_key field 'customer' of Order is a relation"
    ):
        run_batch(
            serializer_class=OrderSerializer,
            rows=[order_item()],
            mode="update",
            natural_key=("customer",),
        )


def test_serializer_without_model_is_refused():
    from rest_framework import serializers

    class Plain(serializers.Serializer):
        name = serializers.CharField()

    with pytest.raises(ImproperlyConfigured, match="Plain has no Meta.model"):
        ChunkValidator(serializer_class=Plain, mode="create")


# -- set-based: the query count does not grow with the rows ----------------------------


@pytest.fixture
def sqlite_runtime_param_limit(monkeypatch):
    """Use SQLite's real parameter limit instead of Django 5.2's assumed 999.

    With 999, Django splits a 1,000-row ``bulk_create`` and the engine splits
    ``__in`` lists, one more query per ~1,000 values: a cost per thousand values, not
    per row (``test_sqlite_parameter_cap_splits_per_thousand_values_not_per_row``).
    """
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        monkeypatch.setattr(connection.features, "max_query_params", limit)


@pytest.fixture
def stock():
    """Five categories and 1,000 products S-0000 .. S-0999."""
    categories = [Category.objects.create(name=f"Cat {i}") for i in range(5)]
    Product.objects.bulk_create(
        Product(sku=f"S-{i:04d}", name=f"Stock {i}", category=categories[i % 5], price=1)
        for i in range(1000)
    )
    return categories


def rows_for(mode, n, prefix):
    rows = []
    for i in range(n):
        category = f"Cat {i % 5}" if i % 50 else "Nope"
        if mode == "create":
            # every 10th row takes an sku that exists
            sku = f"S-{i:04d}" if i % 10 == 0 else f"{prefix}-{i}"
            rows.append(ProductItemFactory(sku=sku, category=category))
        elif mode == "update":
            sku = f"S-{i:04d}" if i % 20 else f"MISSING-{i}"
            rows.append({"sku": sku, "price": "2.00", "category": category})
        else:
            sku = f"S-{i:04d}" if i % 2 else f"{prefix}-{i}"
            rows.append(ProductItemFactory(sku=sku, category=category))
    return rows


def queries_of(action):
    with CaptureQueriesContext(connection) as captured:
        result = action()
    return len(captured.captured_queries), result


# One query per related field, one per unique constraint, one for the targets.
VALIDATION_QUERIES = {"create": 2, "update": 3, "upsert": 3, "delete": 1}


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["create", "update", "upsert"])
def test_validation_query_count_does_not_grow_with_rows(stock, sqlite_runtime_param_limit, mode):
    counts = {}
    for n in (100, 1000):
        rows = rows_for(mode, n, prefix=f"Q{n}")
        counts[n], result = queries_of(
            lambda rows=rows: run(rows, mode=mode, dry_run=True, chunk_size=1000, atomic="none")
        )
        statuses = [r.status for r in result.results]
        assert len(statuses) == n
        assert statuses.count("error") > 0 and statuses.count("error") < n
    assert counts[100] == counts[1000] == VALIDATION_QUERIES[mode]


@pytest.mark.django_db
def test_delete_validation_query_count_does_not_grow_with_rows(stock, sqlite_runtime_param_limit):
    counts = {}
    for n in (100, 1000):
        rows = [{"sku": f"S-{i:04d}"} for i in range(n)]
        counts[n], result = queries_of(
            lambda rows=rows: run(rows, mode="delete", dry_run=True, chunk_size=1000)
        )
        assert result.summary["deleted"] == n
    assert counts[100] == counts[1000] == VALIDATION_QUERIES["delete"]


@pytest.mark.django_db
def test_full_create_run_query_count_does_not_grow_with_rows(tools, sqlite_runtime_param_limit):
    counts = {}
    for n in (100, 1000):
        rows = [ProductItemFactory(sku=f"F{n}-{i}") for i in range(n)]
        counts[n], result = queries_of(lambda rows=rows: run(rows, chunk_size=1000))
        assert result.summary["created"] == n
        assert all(r.id is not None for r in result.results)
    assert counts[100] == counts[1000]
    assert Product.objects.count() == 1100


@pytest.mark.django_db
def test_full_update_run_query_count_does_not_grow_with_rows(stock, sqlite_runtime_param_limit):
    counts = {}
    for n in (100, 1000):
        rows = [{"sku": f"S-{i:04d}", "price": f"{n}.00"} for i in range(n)]
        counts[n], result = queries_of(lambda rows=rows: run(rows, mode="update", chunk_size=1000))
        assert result.summary["updated"] == n
    assert counts[100] == counts[1000]
    assert Product.objects.filter(price=Decimal("1000.00")).count() == 1000


@pytest.mark.django_db
def test_sqlite_parameter_cap_splits_per_thousand_values_not_per_row(stock):
    """With Django's own parameter cap, 1,000 and 1,900 rows still cost the same."""
    counts = {}
    for n in (1000, 1900):
        rows = [ProductItemFactory(sku=f"P{n}-{i}", category=f"Cat {i % 5}") for i in range(n)]
        counts[n], result = queries_of(lambda rows=rows: run(rows, dry_run=True, chunk_size=2000))
        assert result.summary["created"] == n
    assert counts[1000] == counts[1900] <= VALIDATION_QUERIES["create"] + 1


@pytest.mark.django_db
def test_drfs_own_text_rules_still_apply(tools):
    rows = [
        ProductItemFactory(sku="T-1", name="bad\ud800char"),
        ProductItemFactory(sku="T-2", name="nul\x00char"),
        ProductItemFactory(sku="T-3", name="x" * 201),
        ProductItemFactory(sku="T-4", name="   "),
        ProductItemFactory(sku="T-5", name="fine \u00e9"),
    ]

    result = run(rows, atomic="none")

    assert outcome(result) == [
        ("error", {"name": ["Surrogate characters are not allowed: U+D800."]}),
        ("error", {"name": ["Null characters are not allowed."]}),
        ("error", {"name": ["Ensure this field has no more than 200 characters."]}),
        ("error", {"name": ["This field may not be blank."]}),
        ("created", None),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["update", "upsert", "delete"])
def test_a_natural_key_that_is_not_unique_never_picks_an_object_at_random(tools, mode):
    first = ProductFactory(sku="A", name="Widget", price=Decimal("1.00"), category=tools)
    second = ProductFactory(sku="B", name="Widget", price=Decimal("1.00"), category=tools)
    ProductFactory(sku="C", name="Gadget", price=Decimal("1.00"), category=tools)
    rows = [
        ProductItemFactory(name="Widget", price="2.00"),
        ProductItemFactory(sku="C", name="Gadget", price="2.00"),
    ]

    result = run(rows, mode=mode, natural_key=("name",), atomic="none")

    assert outcome(result) == [
        ("error", {"name": ["More than one of the products has name=Widget."]}),
        ({"delete": "deleted"}.get(mode, "updated"), None),
    ]
    assert sorted(Product.objects.filter(name="Widget").values_list("pk", "price")) == [
        (first.pk, Decimal("1.00")),
        (second.pk, Decimal("1.00")),
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["create", "delete"])
def test_a_value_three_times_fails_all_three_rows_in_a_big_batch(mode):
    """6,000 rows, chunks of 1,000: the three rows are in two chunks."""
    tools = CategoryFactory(name="Tools")
    ProductFactory(sku="E-1", category=tools)
    if mode == "create":
        rows = [ProductItemFactory(sku=f"P-{i}") for i in range(6000)]
        for i in (100, 5500, 5501):
            rows[i]["sku"] = "TRIPLE"
        message = duplicate
    else:
        rows = [{"sku": f"NOPE-{i}"} for i in range(6000)]
        for i in (100, 5500, 5501):
            rows[i] = {"sku": "E-1"}
        message = same_object

    result = run(rows, mode=mode, dry_run=True, chunk_size=1000)

    assert [result.results[i].errors for i in (100, 5500, 5501)] == [
        {"sku": [message("item 5500"), message("item 5501")]},
        {"sku": [message("item 100")]},
        {"sku": [message("item 100")]},
    ]
