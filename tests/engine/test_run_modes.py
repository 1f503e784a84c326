"""run_batch: every mode under every transaction mode, dry runs, result order.

The batches here span several chunks (chunk_size=2) and mix valid and invalid
rows, so each test can tell which chunks a transaction mode wrote, which it rolled
back, and what it reported for each row.
"""

from decimal import Decimal

import pytest

from bulkops.engine import SourceRow, run_batch
from project.catalog.models import Product
from project.catalog.serializers import ProductSerializer
from tests.factories import CategoryFactory, ProductFactory, ProductItemFactory

MODES = ("create", "update", "upsert", "delete")
ATOMICS = ("all", "chunk", "none")
SUCCESS = {"created", "updated", "deleted"}
PRICE_ERROR = {"price": ["Ensure this value is greater than or equal to 0."]}
BAD_ROW = 3  # in chunk [2, 3] of the chunks [0, 1] [2, 3] [4]


@pytest.fixture
def catalog():
    """Two categories and five products E-0 .. E-4 (Tools, 10.00, quantity 5)."""
    tools = CategoryFactory(name="Tools")
    CategoryFactory(name="Garden")
    products = [
        ProductFactory(sku=f"E-{i}", name=f"Existing {i}", category=tools, price=Decimal("10.00"))
        for i in range(5)
    ]
    return {p.sku: p for p in products}


def snapshot():
    """Every product as sku -> (name, category, price, quantity)."""
    return {
        p.sku: (p.name, p.category.name, p.price, p.quantity)
        for p in Product.objects.select_related("category")
    }


def make_batch(mode, catalog, *, valid):
    """Five rows for ``mode``; row 3 is invalid unless ``valid``.

    Returns the rows and, per row, (sku, state after a write or None when deleted,
    status on success, primary key it names or None for a new object).
    """
    existing = {sku: p.pk for sku, p in catalog.items()}
    if mode == "create":
        rows = [
            ProductItemFactory(sku=f"N-{i}", name=f"New {i}", price=f"{i}.50") for i in range(5)
        ]
        effects = [
            (f"N-{i}", (f"New {i}", "Tools", Decimal(f"{i}.50"), 1), "created", None)
            for i in range(5)
        ]
    elif mode == "update":
        rows = [{"sku": f"E-{i}", "price": f"{i}1.00"} for i in range(5)]
        effects = [
            (
                f"E-{i}",
                (f"Existing {i}", "Tools", Decimal(f"{i}1.00"), 5),
                "updated",
                existing[f"E-{i}"],
            )
            for i in range(5)
        ]
    elif mode == "upsert":
        rows = [
            ProductItemFactory(sku="E-0", name="Renamed 0", category="Garden", price="20.00"),
            ProductItemFactory(sku="N-1", name="New 1", price="1.50"),
            ProductItemFactory(sku="E-2", name="Renamed 2", price="22.00", quantity=7),
            ProductItemFactory(sku="N-3", name="New 3", price="3.50"),
            ProductItemFactory(sku="N-4", name="New 4", price="4.50"),
        ]
        effects = [
            ("E-0", ("Renamed 0", "Garden", Decimal("20.00"), 1), "updated", existing["E-0"]),
            ("N-1", ("New 1", "Tools", Decimal("1.50"), 1), "created", None),
            ("E-2", ("Renamed 2", "Tools", Decimal("22.00"), 7), "updated", existing["E-2"]),
            ("N-3", ("New 3", "Tools", Decimal("3.50"), 1), "created", None),
            ("N-4", ("New 4", "Tools", Decimal("4.50"), 1), "created", None),
        ]
    else:
        rows = [
            {"sku": "E-0"},
            {"id": existing["E-1"]},
            {"sku": "E-2"},
            {"sku": "E-3"},
            {"sku": "E-4"},
        ]
        effects = [(f"E-{i}", None, "deleted", existing[f"E-{i}"]) for i in range(5)]
    error = None
    if not valid:
        if mode == "delete":
            rows[BAD_ROW] = {"sku": "NOPE"}
            error = {"sku": ["No product with sku=NOPE."]}
        else:
            rows[BAD_ROW] = {**rows[BAD_ROW], "price": "-1"}
            error = PRICE_ERROR
    return rows, effects, error


def expected_written(atomic, *, valid):
    """Indices of the rows a real run writes."""
    if valid:
        return {0, 1, 2, 3, 4}
    return {"all": set(), "chunk": {0, 1, 4}, "none": {0, 1, 2, 4}}[atomic]


def expected_statuses(effects, atomic, *, valid):
    written = expected_written(atomic, valid=valid)
    statuses = []
    for index, (_, _, status, _) in enumerate(effects):
        if not valid and index == BAD_ROW:
            statuses.append("error")
        elif index in written:
            statuses.append(status)
        else:
            statuses.append("rolled_back")
    return statuses


def summary_of(statuses):
    count = statuses.count
    succeeded = sum(count(s) for s in SUCCESS)
    return {
        "total": len(statuses),
        "succeeded": succeeded,
        "failed": len(statuses) - succeeded,
        "created": count("created"),
        "updated": count("updated"),
        "deleted": count("deleted"),
        "rolled_back": count("rolled_back"),
        "replayed": 0,
    }


def overall(statuses):
    succeeded = sum(s in SUCCESS for s in statuses)
    if succeeded == len(statuses):
        return "completed"
    return "failed" if succeeded == 0 else "partial"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("atomic", ATOMICS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("valid", [False, True], ids=["mixed", "all-valid"])
def test_mode_and_atomic_write_exactly_the_chunks_they_promise(mode, atomic, valid, catalog):
    rows, effects, error = make_batch(mode, catalog, valid=valid)
    before = snapshot()

    result = run_batch(
        serializer_class=ProductSerializer, rows=rows, mode=mode, atomic=atomic, chunk_size=2
    )

    statuses = expected_statuses(effects, atomic, valid=valid)
    assert [r.status for r in result.results] == statuses
    assert [r.index for r in result.results] == [0, 1, 2, 3, 4]
    assert result.summary == summary_of(statuses)
    assert result.status == overall(statuses)
    assert result.status == ("completed" if valid else "failed" if atomic == "all" else "partial")
    assert (result.mode, result.atomic, result.dry_run) == (mode, atomic, False)

    written = expected_written(atomic, valid=valid)
    expected = dict(before)
    for index in written:
        sku, state, _, _ = effects[index]
        if state is None:
            del expected[sku]
        else:
            expected[sku] = state
    assert snapshot() == expected

    for index, (row_result, (sku, _, status, pk)) in enumerate(
        zip(result.results, effects, strict=True)
    ):
        if row_result.status == "error":
            assert row_result.errors == error
            assert row_result.id is None and row_result.data is None
            assert row_result.values == rows[index]
        elif row_result.status == "rolled_back":
            assert row_result.errors is None
            assert row_result.id is None and row_result.data is None
        else:
            assert row_result.errors is None
            if status == "created":
                pk = Product.objects.get(sku=sku).pk
            assert row_result.id == pk
            assert row_result.data["id"] == pk
            assert row_result.data["sku"] == sku


@pytest.mark.django_db
@pytest.mark.parametrize("atomic", ATOMICS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("valid", [False, True], ids=["mixed", "all-valid"])
def test_dry_run_writes_nothing_and_reports_would_be_statuses(mode, atomic, valid, catalog):
    rows, effects, error = make_batch(mode, catalog, valid=valid)
    before = snapshot()
    calls = []

    result = run_batch(
        serializer_class=ProductSerializer,
        rows=rows,
        mode=mode,
        atomic=atomic,
        chunk_size=2,
        dry_run=True,
        after_write=lambda action, objs: calls.append(action),
    )

    assert snapshot() == before
    assert Product.objects.count() == 5
    assert calls == []
    statuses = expected_statuses(effects, atomic, valid=valid)
    assert [r.status for r in result.results] == statuses
    assert result.summary == summary_of(statuses)
    assert result.dry_run is True
    for row_result, (sku, _, status, pk) in zip(result.results, effects, strict=True):
        if row_result.status == "error":
            assert row_result.errors == error
        elif row_result.status == "rolled_back":
            assert row_result.id is None and row_result.data is None
        else:
            # A row that would be created has no id yet; others name their object.
            assert row_result.id == (None if status == "created" else pk)
            assert row_result.data["sku"] == sku


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["update", "upsert"])
def test_dry_run_of_updates_renders_the_new_values_without_saving_them(mode, catalog):
    row = ProductItemFactory(sku="E-1", name="Would be", price="99.00")
    result = run_batch(serializer_class=ProductSerializer, rows=[row], mode=mode, dry_run=True)

    [item] = result.results
    assert (item.status, item.id) == ("updated", catalog["E-1"].pk)
    assert (item.data["name"], item.data["price"]) == ("Would be", "99.00")
    catalog["E-1"].refresh_from_db()
    assert (catalog["E-1"].name, catalog["E-1"].price) == ("Existing 1", Decimal("10.00"))


@pytest.mark.django_db
@pytest.mark.parametrize("atomic", ATOMICS)
@pytest.mark.parametrize("mode", MODES)
def test_results_keep_input_order_with_index_row_and_ref(mode, atomic, catalog):
    rows, effects, error = make_batch(mode, catalog, valid=False)
    source = [SourceRow(values, row=10 + 3 * i, ref=f"ref-{i}") for i, values in enumerate(rows)]
    streamed = []

    result = run_batch(
        serializer_class=ProductSerializer,
        rows=source,
        mode=mode,
        atomic=atomic,
        chunk_size=2,
        on_row=streamed.append,
    )

    assert [r.index for r in result.results] == [0, 1, 2, 3, 4]
    assert [r.row for r in result.results] == [10, 13, 16, 19, 22]
    assert [r.ref for r in result.results] == ["ref-0", "ref-1", "ref-2", "ref-3", "ref-4"]
    assert [r.index for r in streamed] == [0, 1, 2, 3, 4]
    assert list(result) == result.results
    bad = result.results[BAD_ROW].as_dict()
    assert bad == {"index": 3, "row": 19, "ref": "ref-3", "status": "error", "errors": error}
    first = result.results[0].as_dict()
    assert (first["index"], first["row"], first["ref"]) == (0, 10, "ref-0")


@pytest.mark.django_db
@pytest.mark.parametrize("mode", MODES)
def test_an_empty_batch_completes_with_zero_counts(mode, catalog):
    result = run_batch(serializer_class=ProductSerializer, rows=[], mode=mode)

    assert result.results == []
    assert result.status == "completed"
    assert result.summary == summary_of([])
    assert Product.objects.count() == 5


@pytest.mark.django_db
def test_with_data_false_reports_ids_without_data(catalog):
    rows = [ProductItemFactory(sku="W-1"), {"sku": "E-0", "price": "1"}]
    result = run_batch(
        serializer_class=ProductSerializer, rows=rows, mode="upsert", with_data=False
    )

    assert [r.status for r in result.results] == ["created", "error"]
    assert result.results[0].id == Product.objects.get(sku="W-1").pk
    assert result.results[0].data is None
    assert result.results[0].as_dict() == {
        "index": 0,
        "status": "created",
        "id": result.results[0].id,
    }
    assert result.results[1].errors == {
        "name": ["This field is required."],
        "category": ["This field is required."],
    }
