"""Big batches: streaming results, and validated chunks spooled to disk (the stores)."""

from datetime import date
from decimal import Decimal

import pytest

import bulkops.engine.run as run_module
from bulkops.engine import JsonLinesStore, SourceRow, SpoolStore, StagedChunk, StagedRow, run_batch
from project.catalog.models import Product
from project.catalog.serializers import ProductSerializer
from tests.factories import CategoryFactory, ProductFactory, ProductItemFactory

# -- the stores ---------------------------------------------------------------------------


def staged_chunks(sizes):
    """Chunks of staged rows, as validation leaves them: creates, an update, errors."""
    chunks = []
    start = 0
    for size in sizes:
        rows = []
        for index in range(start, start + size):
            if index % 5 == 4:
                rows.append(
                    StagedRow(index, row=index + 2, errors={"sku": ["bad"]}, source={"sku": ""})
                )
            else:
                values = {"sku": f"S-{index}", "price": Decimal(f"{index}.50"), "category_id": 7}
                rows.append(
                    StagedRow(
                        index,
                        row=index + 2,
                        ref=f"r{index}",
                        action="create",
                        values=values,
                        source={"sku": f"S-{index}", "released": date(2024, 1, 1 + index % 28)},
                    )
                )
        chunks.append(StagedChunk(start, rows, {"unique:sku": []}, Product))
        start += size
    return chunks


def test_spool_store_keeps_small_batches_in_memory():
    store = SpoolStore(Product, memory_rows=10)
    chunks = staged_chunks([4, 4, 2])
    for chunk in chunks:
        store.append(chunk)

    assert store.spooled == 0
    assert [c is d for c, d in zip(store, chunks, strict=True)] == [True, True, True]
    store.close()
    assert list(store) == []


def test_spool_store_spools_past_memory_rows_and_keeps_order():
    store = SpoolStore(Product, memory_rows=5)
    chunks = staged_chunks([2, 2, 2, 1, 3, 2])
    try:
        for chunk in chunks:
            store.append(chunk)

        # 2 + 2 fit; the third chunk would make 6 > 5, so it and every later one,
        # however small, go to the file, and order is kept.
        assert store.spooled == 4
        read = list(store)
        assert read == chunks
        assert [c is d for c, d in zip(read, chunks, strict=True)] == [True] * 2 + [False] * 4
        assert list(store) == chunks  # a second pass reads the file again
        assert type(read[3].rows[0].values["price"]) is Decimal
    finally:
        store.close()
    assert list(store) == []


def test_json_lines_store_reads_every_chunk_back_equal():
    store = JsonLinesStore(Product)
    chunks = staged_chunks([3, 3])
    for chunk in chunks:
        store.append(chunk)

    assert list(store) == chunks
    # Two readers at once each keep their own place in the file.
    first, second = iter(store), iter(store)
    assert next(first) == next(second) == chunks[0]
    assert next(first) == chunks[1]
    store.close()


# -- run_batch with results streamed, not kept ------------------------------------------


@pytest.mark.django_db
def test_keep_results_false_streams_every_result_in_order(tools):
    n = 2500
    rows = [ProductItemFactory(sku=f"B-{i:04d}") for i in range(n)]
    rows[7]["price"] = "-1"
    rows[1999]["sku"] = "B-0003"  # duplicate of a row 20 chunks earlier
    streamed = []

    result = run_batch(
        serializer_class=ProductSerializer,
        rows=iter(rows),
        mode="create",
        chunk_size=100,
        keep_results=False,
        on_row=streamed.append,
    )

    assert result.results == []
    assert [r.index for r in streamed] == list(range(n))
    errors = {r.index: r.errors for r in streamed if r.status == "error"}
    assert errors == {
        3: {"sku": ["Duplicate sku: item 1999 of this batch has the same value."]},
        7: {"price": ["Ensure this value is greater than or equal to 0."]},
        1999: {"sku": ["Duplicate sku: item 3 of this batch has the same value."]},
    }
    assert result.summary["created"] == n - 3
    assert result.summary["failed"] == 3
    assert result.status == "partial"
    assert Product.objects.count() == n - 3
    created = [r for r in streamed if r.status == "created"]
    assert {r.id for r in created} == set(Product.objects.values_list("pk", flat=True))


# -- run_batch with its chunks spooled to disk ------------------------------------------


@pytest.fixture
def small_spool(monkeypatch):
    """run_batch keeps 8 rows in memory and spools every later chunk."""
    spooled = []

    class CountingFile(JsonLinesStore):
        def append(self, chunk):
            spooled.append([row.index for row in chunk.rows])
            super().append(chunk)

    class SmallStore(SpoolStore):
        def __init__(self, model):
            super().__init__(model, memory_rows=8)
            self.file = CountingFile(model)

    monkeypatch.setattr(run_module, "SpoolStore", SmallStore)
    yield
    # Chunks 2..7 of the batch went through the file.
    assert spooled == [list(range(i, min(i + 4, SPOOL_ROWS))) for i in range(8, 30, 4)]


SPOOL_ROWS = 30
SPOOL_CHUNK = 4  # chunks 0-1 in memory, 2-7 on disk


@pytest.mark.django_db
@pytest.mark.parametrize("with_data", [True, False])
@pytest.mark.parametrize("atomic", ["none", "chunk"])
def test_spooled_create_keeps_order_errors_and_late_duplicates(
    tools, small_spool, atomic, with_data
):
    rows = [
        SourceRow(ProductItemFactory(sku=f"S-{i:02d}"), row=i + 2, ref=i) for i in range(SPOOL_ROWS)
    ]
    rows[25].values["sku"] = "S-01"  # duplicate of an in-memory row, found on disk
    rows[13].values["price"] = "-1"
    streamed = []

    result = run_batch(
        serializer_class=ProductSerializer,
        rows=rows,
        mode="create",
        atomic=atomic,
        chunk_size=SPOOL_CHUNK,
        with_data=with_data,
        on_row=streamed.append,
    )

    bad = {1, 13, 25}
    rolled_back = {0, 2, 3, 12, 14, 15, 24, 26, 27} if atomic == "chunk" else set()
    statuses = [
        "error" if i in bad else "rolled_back" if i in rolled_back else "created"
        for i in range(SPOOL_ROWS)
    ]
    assert [r.status for r in result.results] == statuses
    assert [r.index for r in streamed] == list(range(SPOOL_ROWS))
    assert [r.row for r in result.results] == [i + 2 for i in range(SPOOL_ROWS)]
    assert [r.ref for r in result.results] == list(range(SPOOL_ROWS))
    assert result.results[1].errors == {
        "sku": ["Duplicate sku: row 27 of this batch has the same value."]
    }
    assert result.results[25].errors == {
        "sku": ["Duplicate sku: row 3 of this batch has the same value."]
    }
    written = {r.values["sku"] for i, r in enumerate(rows) if statuses[i] == "created"}
    assert set(Product.objects.values_list("sku", flat=True)) == written
    for row_result in result.results:
        if row_result.status == "created":
            product = Product.objects.get(pk=row_result.id)
            assert product.sku == rows[row_result.index].values["sku"]
            assert row_result.data == (
                {
                    "id": product.pk,
                    "sku": product.sku,
                    "name": product.name,
                    "category": "Tools",
                    "price": "10.00",
                    "quantity": 1,
                    "active": True,
                    "released": None,
                }
                if with_data
                else None
            )


@pytest.mark.django_db
@pytest.mark.parametrize("with_data", [True, False])
@pytest.mark.parametrize("mode", ["update", "upsert", "delete"])
def test_spooled_updates_and_deletes_write_the_rows_read_back(tools, small_spool, mode, with_data):
    garden = CategoryFactory(name="Garden")
    products = [
        ProductFactory(sku=f"E-{i:02d}", category=tools, price=Decimal("1.00"))
        for i in range(SPOOL_ROWS)
    ]
    if mode == "delete":
        rows = [{"sku": p.sku} for p in products]
    else:
        rows = [
            ProductItemFactory(sku=p.sku, name=f"Changed {i}", category="Garden", price=f"{i}.00")
            for i, p in enumerate(products)
        ]
    rows[21] = {"sku": "NOPE"} if mode != "upsert" else {"sku": "E-21", "price": "-1"}
    hooked = []

    result = run_batch(
        serializer_class=ProductSerializer,
        rows=rows,
        mode=mode,
        chunk_size=SPOOL_CHUNK,
        with_data=with_data,
        after_write=lambda action, objs: hooked.extend(o.pk for o in objs),
    )

    success = "deleted" if mode == "delete" else "updated"
    statuses = [r.status for r in result.results]
    assert statuses == [success] * 21 + ["error"] + [success] * 8
    assert [r.id for r in result.results if r.status == success] == (
        [p.pk for i, p in enumerate(products) if i != 21]
    )
    assert hooked == [p.pk for i, p in enumerate(products) if i != 21]
    if mode == "delete":
        assert list(Product.objects.values_list("sku", flat=True)) == ["E-21"]
        return
    for i, product in enumerate(Product.objects.order_by("sku")):
        if i == 21:
            assert (product.name, product.category, product.price) == (
                products[21].name,
                tools,
                Decimal("1.00"),
            )
        else:
            assert (product.name, product.category, product.price) == (
                f"Changed {i}",
                garden,
                Decimal(f"{i}.00"),
            )
    if with_data:
        assert result.results[29].data["name"] == "Changed 29"
        assert result.results[29].data["category"] == "Garden"
