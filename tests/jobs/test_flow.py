"""A job from start to end, run in this process (no Redis: ``BULKOPS_RQ_SYNC=1``).

Every stage is the one real workers run; here the tasks run one after the other once
the transaction that sent them commits. Runs on PostgreSQL and SQLite.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import transaction

from bulkops.engine import run_batch
from bulkops.engine.readers import open_rows
from bulkops.exceptions import InvalidOptions, UnreadableFile
from bulkops.jobs import services
from bulkops.jobs.models import BulkChunk, BulkJob, BulkPayload
from bulkops.jobs.signals import job_finished
from project.catalog.models import Category, Order, Product
from project.catalog.serializers import ProductSerializer
from tests.jobs.data import (
    ORDER_HEADER,
    PRODUCT_HEADER,
    catalog,
    order_items,
    order_rows,
    product_rows,
    write_csv,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("in_process")]


@pytest.fixture
def ann():
    return get_user_model().objects.create_user("ann")


def upload(path, name=None):
    return ContentFile(path.read_bytes(), name=name or path.name)


def start_products(user, path, **options):
    options.setdefault("mode", "create")
    options.setdefault("chunk_size", 10)
    options.setdefault("source", "command")
    return services.start_file_job(user=user, model="catalog.product", file=upload(path), **options)


def finished(job):
    job.refresh_from_db()
    return job


def sync_errors(path, mode="create", chunk_size=10):
    """Row number -> errors, as the synchronous engine reports the same file."""
    with open_rows(path, serializer=ProductSerializer(), mode=mode) as rows:
        result = run_batch(
            serializer_class=ProductSerializer,
            rows=rows,
            mode=mode,
            chunk_size=chunk_size,
            dry_run=True,
            with_data=False,
        )
    return {r.row: r.errors for r in result.results if r.errors}


def test_a_file_job_reports_every_row_as_the_synchronous_engine_does(tmp_path, ann, media_root):
    catalog(products=0)
    rows = product_rows(35)
    rows[3][3] = "-1"  # chunk 0: a bad price
    rows[14][0] = rows[2][0]  # chunk 1 repeats a SKU of chunk 0 ...
    rows[33][0] = rows[2][0]  # ... and chunk 3 too
    rows[21][0] = rows[20][0]  # a duplicate inside chunk 2
    rows[27][2] = "Nowhere"  # an unknown category
    path = write_csv(tmp_path / "products.csv", PRODUCT_HEADER, rows)
    expected = sync_errors(path)

    job = finished(start_products(ann, path))

    assert job.status == BulkJob.PARTIAL, job.error
    errors = {e.row: e.errors for e in job.row_errors.all()}
    assert errors == expected
    assert set(errors) == {5, 4, 16, 35, 22, 23, 29}
    assert job.row_errors.get(row=5).values["price"] == "-1"
    assert (job.created, job.errors, job.unprocessed) == (28, 7, 0)
    assert Product.objects.count() == 28
    assert job.progress["percent"] == 100.0
    assert not BulkChunk.objects.filter(job=job).exclude(staged="").exists()  # retention


def test_atomic_chunk_rolls_back_only_the_chunks_with_an_error(tmp_path, ann, media_root):
    catalog(products=0)
    rows = product_rows(30)
    rows[25][3] = "-5"
    path = write_csv(tmp_path / "p.csv", PRODUCT_HEADER, rows)

    job = finished(start_products(ann, path, atomic="chunk"))

    assert (job.status, job.created, job.errors, job.rolled_back) == (BulkJob.PARTIAL, 20, 1, 9)
    statuses = [r.status for r in services.job_results(job)]
    assert statuses == ["created"] * 20 + ["rolled_back"] * 5 + ["error"] + ["rolled_back"] * 4


def test_atomic_all_with_an_error_in_the_last_chunk_writes_nothing(ann):
    catalog()
    items = order_items(45)
    items[44]["quantity"] = "0"

    job = finished(
        services.start_payload_job(
            user=ann,
            model="catalog.order",
            items=items,
            mode="create",
            atomic="all",
            chunk_size=10,
        )  # fmt: skip
    )

    assert job.status == BulkJob.FAILED
    assert Order.objects.count() == 0
    results = list(services.job_results(job))
    assert [r.status for r in results] == ["rolled_back"] * 44 + ["error"]
    assert results[44].errors == {"quantity": ["Ensure this value is greater than or equal to 1."]}
    assert results[44].row is None and results[44].index == 44


def test_a_payload_job_writes_every_item_once_with_its_ref(ann):
    catalog()
    items = order_items(25)
    items[3]["_ref"] = "third"

    job = finished(
        services.start_payload_job(
            user=ann, model="catalog.order", items=items, mode="create", chunk_size=10
        )
    )

    assert (job.status, job.created, job.total_rows) == (BulkJob.COMPLETED, 25, 25)
    assert Order.objects.count() == 25
    assert not BulkPayload.objects.filter(job=job).exists()  # read into chunks, then gone
    results = list(services.job_results(job))
    assert results[3].ref == "third"
    assert sorted(r.id for r in results) == sorted(Order.objects.values_list("pk", flat=True))


def test_a_confirmed_job_waits_can_be_fixed_in_place_then_writes(tmp_path, ann, media_root):
    catalog(products=0)
    rows = product_rows(25)
    rows[4][3] = "-1"  # row 6
    rows[15][0] = rows[5][0]  # row 17 repeats row 7's SKU
    path = write_csv(tmp_path / "p.csv", PRODUCT_HEADER, rows)

    job = finished(start_products(ann, path, confirm=True, source="admin"))
    assert (job.status, job.stage, job.invalid_rows) == (BulkJob.VALIDATED, "confirm", 3)
    assert Product.objects.count() == 0

    fixed = services.revalidate_rows(
        job=job, user=ann, edits={6: {"price": "3.50"}, 17: {"sku": "FIXED-17"}}
    )
    assert fixed == {6: None, 17: None}
    job.refresh_from_db()
    assert job.invalid_rows == 0 and not job.row_errors.exists()

    broken = services.revalidate_rows(job=job, user=ann, edits={8: {"sku": "FIXED-17"}})
    assert list(broken) == [8] and "row 17" in str(broken[8])
    assert set(job.row_errors.values_list("row", flat=True)) == {8, 17}
    services.revalidate_rows(job=job, user=ann, edits={8: {"sku": "N-6"}})

    services.confirm_job(job=job, user=ann)
    job = finished(job)
    assert (job.status, job.created) == (BulkJob.COMPLETED, 25)
    assert Product.objects.get(sku="N-4").price == Decimal("3.50")
    assert Product.objects.filter(sku="FIXED-17").exists()


def test_a_related_object_deleted_after_validation_fails_its_row_worded_as_given(
    tmp_path, ann, media_root
):
    """A chunk of valid rows is written without reading its rows as given; when the
    database refuses one of them, the chunk is written again with them, so the row's
    error and values are what they would have been."""
    catalog(products=0)
    Category.objects.create(name="Garden")
    rows = product_rows(4)
    rows[2][2] = "Garden"
    job = finished(
        start_products(ann, write_csv(tmp_path / "p.csv", PRODUCT_HEADER, rows), confirm=True)
    )
    assert (job.status, job.invalid_rows) == (BulkJob.VALIDATED, 0)
    Category.objects.filter(name="Garden").delete()  # another writer, after validation

    services.confirm_job(job=job, user=ann)

    job = finished(job)
    assert (job.status, job.created, job.errors) == (BulkJob.PARTIAL, 3, 1)
    error = job.row_errors.get()
    assert error.row == 4 and error.values["category"] == "Garden"
    assert error.errors == {"category": ["Object with name=Garden does not exist."]}
    assert Product.objects.count() == 3


def test_what_changed_while_the_job_waited_is_caught_at_write_time(tmp_path, ann, media_root):
    """Nothing is validated again after ``validated``: the write itself reports a target
    deleted and a key taken meanwhile on their rows, and writes the rest."""
    catalog(products=0)
    finished(start_products(ann, write_csv(tmp_path / "p.csv", PRODUCT_HEADER, product_rows(6))))
    rows = product_rows(6)
    for row in rows:
        row[1] = "Renamed"
    job = finished(
        start_products(
            ann, write_csv(tmp_path / "q.csv", PRODUCT_HEADER, rows), mode="update", confirm=True
        )
    )
    later = finished(
        start_products(
            ann,
            write_csv(tmp_path / "r.csv", PRODUCT_HEADER, product_rows(3, prefix="L")),
            confirm=True,
        )
    )
    assert (job.status, job.invalid_rows, later.status, later.invalid_rows) == (
        BulkJob.VALIDATED,
        0,
        BulkJob.VALIDATED,
        0,
    )

    Product.objects.filter(sku="N-2").delete()  # another writer, after validation
    Product.objects.create(
        sku="L-1", name="Competitor", price=1, category=Product.objects.first().category
    )
    services.confirm_job(job=job, user=ann)
    services.confirm_job(job=later, user=ann)

    job, later = finished(job), finished(later)
    assert (job.status, job.updated, job.errors) == (BulkJob.PARTIAL, 5, 1)
    assert list(job.row_errors.values_list("row", flat=True)) == [4]
    assert set(Product.objects.filter(sku__startswith="N-").values_list("name", flat=True)) == {
        "Renamed"
    }
    gone = job.row_errors.get()
    # Worded from the row as given, which the write reads only once a row failed.
    assert gone.values["sku"] == "N-2" and gone.values["name"] == "Renamed"
    assert gone.errors == {"sku": ["No product with sku=N-2."]}
    assert (later.status, later.created, later.errors) == (BulkJob.PARTIAL, 2, 1)
    error = later.row_errors.get()
    assert error.row == 3 and "already exists" in str(error.errors)
    assert error.values["sku"] == "L-1"
    assert Product.objects.get(sku="L-1").name == "Competitor"


def test_a_dry_run_writes_nothing_and_predicts(tmp_path, ann, media_root):
    catalog(products=0)
    path = write_csv(tmp_path / "p.csv", PRODUCT_HEADER, product_rows(12))
    job = finished(start_products(ann, path, dry_run=True))
    assert (job.status, job.created) == (BulkJob.COMPLETED, 12)
    assert Product.objects.count() == 0


def test_an_upsert_updates_and_creates(tmp_path, ann, media_root):
    catalog(products=0)
    path = write_csv(tmp_path / "p.csv", PRODUCT_HEADER, product_rows(5))
    finished(start_products(ann, path))
    rows = product_rows(8)
    rows[0][1] = "Renamed"
    path = write_csv(tmp_path / "q.csv", PRODUCT_HEADER, rows)

    job = finished(start_products(ann, path, mode="upsert"))

    assert (job.status, job.created, job.updated) == (BulkJob.COMPLETED, 3, 5)
    assert Product.objects.get(sku="N-0").name == "Renamed"


def test_an_unreadable_file_fails_the_job_with_one_sentence(tmp_path, ann, media_root):
    path = tmp_path / "p.csv"
    path.write_text("sku,name\nA,B\n")  # no category, price: required for create
    job = finished(start_products(ann, path))
    assert job.status == BulkJob.FAILED
    assert "category" in job.error and "\n" not in job.error


def test_a_file_gone_from_storage_fails_the_job(tmp_path, ann, media_root):
    path = write_csv(tmp_path / "p.csv", PRODUCT_HEADER, product_rows(3))
    with transaction.atomic():  # the job starts when this commits: the file is gone by then
        job = start_products(ann, path)
        storages["default"].delete(job.file_name)
    job = finished(job)
    assert job.status == BulkJob.FAILED
    assert "can no longer be read" in job.error and "upload it again" in job.error


def test_an_empty_file_completes_with_no_rows(tmp_path, ann, media_root):
    path = write_csv(tmp_path / "p.csv", PRODUCT_HEADER, [])
    job = finished(start_products(ann, path))
    assert (job.status, job.total_rows, job.chunks_total) == (BulkJob.COMPLETED, 0, 0)


def test_an_unsupported_file_type_is_refused_before_any_job(ann, media_root):
    with pytest.raises(UnreadableFile, match="cannot be imported"):
        services.start_file_job(
            user=ann, model="catalog.product", file=ContentFile(b"x", name="p.pdf"), mode="create"
        )
    assert not BulkJob.objects.exists()


def test_job_finished_is_sent_once(ann):
    catalog()
    seen = []

    def receiver(sender, job, **kwargs):
        seen.append(job.status)

    job_finished.connect(receiver)
    try:
        services.start_payload_job(
            user=ann, model="catalog.order", items=order_items(5), mode="create"
        )
    finally:
        job_finished.disconnect(receiver)
    assert seen == [BulkJob.COMPLETED]


def test_the_same_idempotency_key_returns_the_same_job(ann):
    catalog()
    first = services.start_payload_job(
        user=ann, model="catalog.order", items=order_items(3), mode="create", idempotency_key="k"
    )
    again = services.start_payload_job(
        user=ann, model="catalog.order", items=order_items(3), mode="create", idempotency_key="k"
    )
    assert again.pk == first.pk
    assert Order.objects.count() == 3


def test_orders_file_with_row_numbers(tmp_path, ann, media_root):
    catalog()
    rows = order_rows(12)
    rows[10][0] = "nobody@example.com"
    path = write_csv(tmp_path / "orders.csv", ORDER_HEADER, rows)
    job = finished(
        services.start_file_job(
            user=ann, model="catalog.order", file=upload(path), mode="create", chunk_size=5
        )
    )
    assert (job.status, job.created) == (BulkJob.PARTIAL, 11)
    error = job.row_errors.get()
    assert error.row == 12
    assert error.errors == {"customer": ["Object with email=nobody@example.com does not exist."]}


def test_nul_characters_in_items_are_reported_not_crashed_on(ann):
    items = [
        {"email": "a@example.com", "name": "A\x00B", "country": "DE"},
        {"email": "b@example.com", "name": "B", "country": "DE"},
    ]
    job = finished(
        services.start_payload_job(user=ann, model="catalog.customer", items=items, mode="create")
    )
    assert (job.status, job.created, job.errors) == (BulkJob.PARTIAL, 1, 1)
    error = job.row_errors.get()
    assert error.values == {"email": "a@example.com", "name": "A\ufffdB", "country": "DE"}
    assert "name" in error.errors


def test_a_column_map_names_the_columns_the_reader_cannot_match(tmp_path, ann, media_root):
    catalog(products=0)
    header = ["Artikel", "Bezeichnung", "Kategorie", "price", "Preis (EUR)", "quantity", "notes"]
    rows = [[f"A-{i}", f"Art {i}", "Tools", "999", f"{i}.50", "1", "x"] for i in range(12)]
    path = write_csv(tmp_path / "artikel.csv", header, rows)
    column_map = {
        "Artikel": "sku",
        "bezeichnung": "name",  # headers compare as the reader compares them
        "Kategorie": "category",
        "price": None,  # a column the reader would match, ignored on purpose ...
        "Preis (EUR)": "price",  # ... for this one
        "notes": None,
    }
    job = finished(start_products(ann, path, column_map=column_map, chunk_size=5))
    assert (job.status, job.created) == (BulkJob.COMPLETED, 12), job.error
    assert Product.objects.get(sku="A-3").price == Decimal("3.50")
    assert job.options["source"]["columns"] == {
        "Artikel": "sku", "Bezeichnung": "name", "Kategorie": "category",
        "Preis (EUR)": "price", "quantity": "quantity",
    }  # fmt: skip


def test_a_column_map_naming_no_field_is_refused_at_once(tmp_path, ann, media_root):
    path = write_csv(tmp_path / "p.csv", PRODUCT_HEADER, product_rows(2))
    with pytest.raises(InvalidOptions, match="'colour', which no column can fill"):
        start_products(ann, path, column_map={"sku": "sku", "Farbe": "colour"})
    assert not BulkJob.objects.exists()


def test_an_upsert_names_the_same_object_twice_as_the_synchronous_engine_does(
    tmp_path, ann, media_root
):
    catalog(products=0)
    finished(start_products(ann, write_csv(tmp_path / "a.csv", PRODUCT_HEADER, product_rows(5))))
    rows = product_rows(32)
    rows[13][0] = rows[1][0]  # an existing product named in chunks 0 and 1 ...
    rows[29][0] = rows[1][0]  # ... and 2
    rows[22][0] = rows[21][0]  # a new one twice inside chunk 2
    path = write_csv(tmp_path / "b.csv", PRODUCT_HEADER, rows)
    expected = sync_errors(path, mode="upsert")

    job = finished(start_products(ann, path, mode="upsert"))

    errors = {e.row: e.errors for e in job.row_errors.all()}
    assert errors == expected
    assert set(errors) == {3, 15, 31, 23, 24}
    assert (job.status, job.created + job.updated, job.errors) == (BulkJob.PARTIAL, 27, 5)
