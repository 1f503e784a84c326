"""Upload -> preview -> fix in place -> confirm through the admin views, on the real jobs.

Jobs run in this process (``in_process``: RQ without a worker); the tests are
transactional so that the jobs' on-commit steps run as they do in production.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client

from bulkops.admin.jobs import VALIDATING
from bulkops.jobs.models import BulkJob
from project.catalog.models import Product
from tests.admin.conftest import make_staff, xlsx_bytes
from tests.factories import CategoryFactory

pytestmark = pytest.mark.django_db(transaction=True)

UPLOAD = "/admin/catalog/product/bulk-import/"
HEADER = ["sku", "name", "category", "price", "quantity"]
ROWS = [
    ["A-1", "Hammer", "Tools", 9.5, 3],
    ["A-2", "Saw", "Tools", -1, 1],  # row 3: negative price
    ["A-3", "Drill", "Toys", 99, 2],  # row 4: unknown category
    ["A-4", "Nails", "Tools", 1.25, 100],
]
PERMS = ("catalog.add_product", "catalog.change_product", "catalog.view_product")


@pytest.fixture
def clerk(db):
    CategoryFactory(name="Tools")
    return make_staff("clerk", *PERMS)


@pytest.fixture
def clerk_client(client, clerk):
    client.force_login(clerk)
    return client


def upload(client, rows=ROWS, name="stock.xlsx", **options):
    data = {"mode": "create", "atomic": "none", "chunk_size": 2, **options}
    data["file"] = SimpleUploadedFile(name, xlsx_bytes([HEADER, *rows]))
    return client.post(UPLOAD, data)


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def test_upload_validates_and_stops_at_the_preview(clerk_client, in_process):
    response = upload(clerk_client)
    job = BulkJob.objects.get()

    assert response.status_code == 302
    assert response["Location"] == f"/admin/bulkops/bulkjob/{job.pk}/change/"
    assert (job.status, job.source, job.mode, job.confirm) == ("validated", "admin", "create", True)
    assert (job.rows_validated, job.invalid_rows) == (4, 2)
    assert Product.objects.count() == 0

    page = clerk_client.get(response["Location"])
    assert page.context["valid_rows"] == 2
    assert [row.row for row in page.context["failed_rows"]] == [3, 4]
    errors = clerk_client.get(response["Location"] + "?view=errors").context["error_lines"]
    assert [(e.row, e.column) for e in errors] == [(3, "price"), (4, "category")]


def test_a_matching_workbook_is_not_decoded_in_the_request(clerk_client, rq_queue, monkeypatch):
    import bulkops.admin.mapping

    def refuse(*args, **kwargs):
        raise AssertionError("the upload view decoded the whole workbook")

    monkeypatch.setattr(bulkops.admin.mapping, "Workbook", refuse)
    response = upload(clerk_client)
    assert response.status_code == 302
    assert BulkJob.objects.get().status in VALIDATING  # no worker serves this test's queue


def test_fix_in_place_then_confirm_writes_exactly_the_validated_rows(clerk_client, in_process):
    job_url = upload(clerk_client)["Location"]
    job = BulkJob.objects.get()

    fixed = clerk_client.post(
        f"/admin/bulkops/bulkjob/{job.pk}/edit/", {"page": 1, "cell-3-price": "7.25"}, follow=True
    )
    assert "Row 3 is valid now and will be imported." in messages_of(fixed)
    still = clerk_client.post(
        f"/admin/bulkops/bulkjob/{job.pk}/edit/",
        {"page": 1, "cell-4-category": "Garden"},
        follow=True,
    )
    assert "Row 4 still has errors: category: Object with name=Garden does not exist." in (
        messages_of(still)
    )
    job.refresh_from_db()
    assert job.invalid_rows == 1

    # Between the preview and the confirm the file changes in storage: the confirm must
    # write what was validated, never read the file again.
    from django.core.files.storage import storages

    storages[job.storage].delete(job.file_name)

    done = clerk_client.post(f"/admin/bulkops/bulkjob/{job.pk}/confirm/", follow=True)
    assert "Import confirmed: writing 3 rows." in messages_of(done)
    job.refresh_from_db()
    assert job.status == BulkJob.PARTIAL
    assert (job.created, job.errors) == (3, 1)
    assert sorted(Product.objects.values_list("sku", "price")) == [
        ("A-1", Decimal("9.50")),
        ("A-2", Decimal("7.25")),
        ("A-4", Decimal("1.25")),
    ]
    page = clerk_client.get(job_url)
    assert page.context["outcome"] == "Import finished with problems: created 3 products; 1 failed."

    # A replayed confirm writes nothing twice.
    replay = clerk_client.post(f"/admin/bulkops/bulkjob/{job.pk}/confirm/", follow=True)
    assert "This import was confirmed before; it is not run twice." in messages_of(replay)
    assert Product.objects.count() == 3


def test_a_confirmed_mapping_reaches_the_job(clerk_client, in_process):
    from bulkops.admin.models import ColumnMapping

    data = {"mode": "create", "atomic": "none", "chunk_size": 1000}
    rows = [["sku", "name", "category", "Unit cost", "Notes"], ["A-1", "Hammer", "Tools", 2, "x"]]
    data["file"] = SimpleUploadedFile("stock.xlsx", xlsx_bytes(rows))
    mapping_url = clerk_client.post(UPLOAD, data)["Location"]
    response = clerk_client.post(
        mapping_url,
        {
            "column_0": "sku",
            "column_1": "name",
            "column_2": "category",
            "column_3": "price",
            "column_4": "",
        },
    )
    job = BulkJob.objects.get()
    assert response["Location"] == f"/admin/bulkops/bulkjob/{job.pk}/change/"
    assert job.column_map == {
        "sku": "sku",
        "name": "name",
        "category": "category",
        "Unit cost": "price",
        "Notes": None,
    }
    assert ColumnMapping.objects.get().mapping == job.column_map
    assert (job.status, job.invalid_rows) == (BulkJob.VALIDATED, 0)
    clerk_client.post(f"/admin/bulkops/bulkjob/{job.pk}/confirm/")
    assert Product.objects.get().price == Decimal("2.00")


def test_hostile_cells_are_validated_as_text_and_shown_escaped(clerk_client, in_process):
    upload(clerk_client)
    job = BulkJob.objects.get()
    clerk_client.post(
        f"/admin/bulkops/bulkjob/{job.pk}/edit/",
        {
            "page": 1,
            "cell-3-name": "<script>alert(1)</script>",
            "cell-4-name": "=cmd|' /C calc'!A0",
        },
    )
    html = clerk_client.get(f"/admin/bulkops/bulkjob/{job.pk}/change/").content.decode()
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    csv_text = b"".join(
        clerk_client.get(f"/admin/bulkops/bulkjob/{job.pk}/failed-rows.csv").streaming_content
    ).decode("utf-8-sig")
    assert "'=cmd|' /C calc'!A0" in csv_text  # neutralised: a spreadsheet shows, never runs it


def test_validate_only_writes_nothing_and_has_no_confirm(clerk_client, in_process):
    job_url = upload(clerk_client, validate_only="on")["Location"]
    job = BulkJob.objects.get()
    assert job.dry_run is True
    page = clerk_client.get(job_url)
    assert job.status in (BulkJob.PARTIAL, BulkJob.COMPLETED, BulkJob.FAILED)
    assert page.context["can_confirm"] is False
    assert page.context["outcome"].startswith(
        "Validation only, nothing was written: would create 2"
    )
    assert Product.objects.count() == 0


def test_a_second_upload_while_the_first_is_validating_is_refused(clerk_client, clerk):
    first = BulkJob.objects.create(
        user=clerk,
        source="admin",
        status=BulkJob.VALIDATING,
        model="catalog.product",
        mode="create",
        atomic="none",
        chunk_size=1000,
        confirm=True,
        filename="first.xlsx",
    )
    response = upload(clerk_client)
    assert response.status_code == 200
    (message,) = messages_of(response)
    assert "Your upload of first.xlsx is still being validated" in message
    assert f'href="/admin/bulkops/bulkjob/{first.pk}/change/"' in message
    assert BulkJob.objects.count() == 1


def test_all_or_nothing_with_failed_rows_says_nothing_will_be_written(clerk_client, in_process):
    job_url = upload(clerk_client, atomic="all")["Location"]
    page = clerk_client.get(job_url)
    assert page.context["atomic_note"] == "All or nothing: if any row fails, nothing is written."


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent requests need PostgreSQL")
def test_four_confirms_at_once_send_the_write_once(clerk, rq_queue):
    from bulkops.jobs.queue import get_queue
    from tests.admin.jobs import make_job

    job = make_job(clerk, rows=4)  # validated, one chunk; the test's queue has no worker
    statuses = []

    def confirm():
        own = Client()
        own.force_login(clerk)
        statuses.append(own.post(f"/admin/bulkops/bulkjob/{job.pk}/confirm/").status_code)
        connection.close()

    threads = [threading.Thread(target=confirm) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    job.refresh_from_db()
    assert statuses == [302] * 4
    assert job.confirmed_at is not None
    writes = [task for task in get_queue().job_ids if "_write_" in task]
    assert len(writes) == 1


def test_a_workbook_over_max_rows_is_refused_at_the_upload(clerk_client, settings):
    settings.BULKOPS = {"MAX_ROWS": 3}
    response = upload(clerk_client)
    assert messages_of(response) == [
        "The sheet 'Sheet1' has 4 rows below the header, more than the limit of 3; "
        "split it into smaller files."
    ]
    assert BulkJob.objects.count() == 0


def test_a_csv_over_max_rows_fails_its_job_with_the_reason(clerk_client, settings, in_process):
    settings.BULKOPS = {"MAX_ROWS": 3}
    data = {"mode": "create", "atomic": "none", "chunk_size": 2}
    lines = "\n".join(",".join(str(c) for c in row) for row in [HEADER, *ROWS])
    data["file"] = SimpleUploadedFile("stock.csv", lines.encode())
    job_url = clerk_client.post(UPLOAD, data)["Location"]
    job = BulkJob.objects.get()
    assert job.status == BulkJob.FAILED
    page = clerk_client.get(job_url).content.decode()
    assert "more than 3 rows" in job.error
    assert job.error.split(";")[0] in page
    assert Product.objects.count() == 0
