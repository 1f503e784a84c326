"""Browser tests of the import pages that need no job: changelist, upload form, mapping."""

from __future__ import annotations

import pytest

from tests.admin.conftest import csv_bytes, log_in, make_staff
from tests.factories import CategoryFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


def test_upload_page_lists_columns_and_offers_templates(page, live_server, shots):
    make_staff("boss", superuser=True)
    CategoryFactory(name="Tools")
    log_in(page, live_server, "boss")
    page.goto(f"{live_server.url}/admin/catalog/product/")
    shots(page, "changelist")
    page.get_by_role("link", name="Import spreadsheet").click()
    page.wait_for_url("**/admin/catalog/product/bulk-import/")
    assert page.get_by_role("heading", name="Import products from a spreadsheet").is_visible()
    table = page.locator(".bulkops-columns table")
    assert "the name of an existing category" in table.inner_text()
    assert "Tools" in table.inner_text()
    shots(page, "upload", dark=True)
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    text = download.value.path().read_text(encoding="utf-8-sig")
    assert text.strip() == ("sku,name,category,price,quantity,active,released")


def test_mapping_step_shows_samples_and_suggestions(page, live_server, shots, tmp_path):
    make_staff("boss", superuser=True)
    CategoryFactory(name="Tools")
    log_in(page, live_server, "boss")
    page.goto(f"{live_server.url}/admin/catalog/product/bulk-import/")
    upload = tmp_path / "products.csv"
    upload.write_bytes(
        csv_bytes(
            [
                ["SKU", "Name", "Category", "Unit price", "Qty", "Notes"],
                ["A-1", "Hammer", "Tools", "9.99", "3", "red"],
                ["A-2", "Saw", "Tools", "19.99", "1", ""],
            ]
        )
    )
    page.get_by_label("Spreadsheet").set_input_files(str(upload))
    page.get_by_role("button", name="Upload and check").click()
    page.wait_for_url("**/bulk-import/map/**")
    shots(page, "mapping")
    assert page.get_by_label("Unit price").input_value() == "price"
    assert page.get_by_label("Qty").input_value() == "quantity"
    assert page.get_by_label("Notes").input_value() == ""
