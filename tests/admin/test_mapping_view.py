"""The column-mapping step through the admin views (test client)."""

from __future__ import annotations

import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from bulkops.admin import uploads
from bulkops.admin.models import ColumnMapping
from tests.admin.conftest import csv_bytes, make_staff

pytestmark = pytest.mark.django_db

UPLOAD = "/admin/catalog/product/bulk-import/"
HEADERS = ["SKU", "Name", "Category", "Unit price", "Qty", "Notes"]
ROWS = [["A-1", "Hammer", "Tools", "9.99", "3", "red"], ["A-2", "Saw", "Tools", "19.99", "1", ""]]


def start_mapping(client, data=None, **options):
    fields = {"mode": "create", "atomic": "none", "chunk_size": 1000, **options}
    data = data or csv_bytes([HEADERS, *ROWS])
    response = client.post(UPLOAD, {"file": SimpleUploadedFile("stock.csv", data), **fields})
    assert response.status_code == 302, response.content[:2000]
    assert "/bulk-import/map/" in response["Location"]
    return response["Location"]


def pending_files(settings) -> list[str]:
    root = os.path.join(settings.MEDIA_ROOT, uploads.PENDING_DIR)
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


def test_unmatched_columns_lead_to_the_mapping_step(admin_client, settings):
    url = start_mapping(admin_client)
    response = admin_client.get(url)

    assert response.status_code == 200
    rows = {row["header"]: row for row in response.context["rows"]}
    assert rows["Unit price"]["samples"] == ["9.99", "19.99"]
    assert rows["Unit price"]["field"].value() == "price"
    assert rows["Qty"]["field"].value() == "quantity"
    assert rows["Notes"]["field"].value() == ""
    assert response.context["unmatched"] == 3
    html = response.content.decode()
    assert '<label for="id_column_3">Unit price</label>' in html
    assert len(pending_files(settings)) == 1  # the upload waits in the jobs' storage


def test_a_required_field_left_unmapped_stops_with_the_engines_sentence(admin_client, settings):
    url = start_mapping(admin_client)
    response = admin_client.post(
        url,
        {
            "column_0": "sku",
            "column_1": "name",
            "column_2": "category",
            "column_3": "",
            "column_4": "quantity",
            "column_5": "",
        },
    )
    assert response.status_code == 200
    assert response.context["problem"] == (
        "Column 'price' is required; the file has: SKU, Name, Category, Unit price, Qty, Notes"
    )
    assert "Column &#x27;price&#x27; is required" in response.content.decode()
    assert ColumnMapping.objects.count() == 0
    assert len(pending_files(settings)) == 1


def test_two_columns_for_one_field_are_refused(admin_client):
    url = start_mapping(admin_client)
    response = admin_client.post(
        url,
        {
            "column_0": "sku",
            "column_1": "name",
            "column_2": "category",
            "column_3": "price",
            "column_4": "price",
            "column_5": "",
        },
    )
    assert (
        "'Unit price' and 'Qty' are both mapped to the field 'price'"
        in (response.context["problem"])
    )


def test_a_field_that_is_not_a_column_is_refused(admin_client):
    url = start_mapping(admin_client)
    response = admin_client.post(url, {"column_0": "password"})
    assert response.status_code == 200
    assert "Select a valid choice" in str(response.context["form"].errors["column_0"])


def test_cancel_deletes_the_waiting_file(admin_client, settings):
    url = start_mapping(admin_client)
    response = admin_client.post(url, {"cancel": "Cancel upload"})

    assert response.status_code == 302
    assert response["Location"] == UPLOAD
    assert pending_files(settings) == []
    follow = admin_client.get(url, follow=True)
    assert "no longer waiting for its columns" in follow.content.decode()


def test_another_user_cannot_open_or_use_the_mapping(admin_client, client):
    url = start_mapping(admin_client)
    client.force_login(make_staff("other", superuser=True))
    response = client.post(url, {"column_0": "sku"})
    assert response.status_code == 302
    assert response["Location"] == UPLOAD
    assert ColumnMapping.objects.count() == 0


def test_the_mapping_of_one_model_is_not_reachable_from_another(admin_client):
    url = start_mapping(admin_client)
    response = admin_client.get(url.replace("/product/", "/category/"))
    assert response.status_code == 302
    assert response["Location"] == "/admin/catalog/category/bulk-import/"


def test_losing_the_permission_for_the_mode_refuses_the_mapping(client):
    user = make_staff("clerk", "catalog.add_product", "catalog.change_product")
    client.force_login(user)
    url = start_mapping(client)
    user.user_permissions.remove(user.user_permissions.get(codename="add_product"))
    assert client.get(url).status_code == 403


def test_the_mapping_page_escapes_what_the_file_holds(admin_client):
    hostile = "<script>alert(1)</script>"
    url = start_mapping(
        admin_client, csv_bytes([["sku", "name", hostile], ["A-1", "B", "<img src=x onerror=1>"]])
    )
    html = admin_client.get(url).content.decode()
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html


def test_stale_waiting_files_are_purged(admin_client, settings):
    import datetime

    start_mapping(admin_client)
    assert uploads.purge_stale() == 0
    later = datetime.datetime.now(datetime.UTC) + uploads.STALE_AFTER + datetime.timedelta(1)
    assert uploads.purge_stale(now=later) == 1
    assert pending_files(settings) == []
