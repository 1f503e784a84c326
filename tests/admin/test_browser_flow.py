"""The admin import as staff use it, in a real browser (Chromium through Playwright).

Jobs run on a real RQ worker process (PostgreSQL) or in the web process (SQLite); see
``job_runner``. Screenshots of every page, at desktop and phone width, are saved (see
tests/admin/conftest.py).
"""

from __future__ import annotations

import csv
import re

import pytest
from playwright.sync_api import expect

from bulkops.jobs.models import BulkJob
from project.catalog.models import Product
from tests.admin.conftest import (
    log_in,
    make_staff,
    xlsx_bytes,
)
from tests.admin.files import bad_file
from tests.factories import CategoryFactory, ProductFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

HEADERS = ["sku", "name", "category", "Unit cost", "quantity"]
MATCHING = ["sku", "name", "category", "price", "quantity"]
GOOD = [[f"N-{i}", f"New {i}", "Tools", 9.5 + i, i] for i in range(6)]
NEGATIVE = ["N-BAD", "Negative", "Tools", -3, 1]  # spreadsheet row 8
UNKNOWN_CATEGORY = ["N-TOY", "Toy", "Toys", 2, 1]  # spreadsheet row 9
PERMS = ("catalog.add_product", "catalog.change_product", "catalog.view_product")


@pytest.fixture
def tools(db):
    return CategoryFactory(name="Tools")


def stock_file(tmp_path, rows, name="stock.xlsx", headers=MATCHING):
    path = tmp_path / name
    path.write_bytes(xlsx_bytes([headers, *rows]))
    return path


def upload(page, live_server, path, *, mode=None):
    page.goto(f"{live_server.url}/admin/catalog/product/")
    page.get_by_role("link", name="Import spreadsheet").click()
    page.get_by_label("Spreadsheet").set_input_files(str(path))
    if mode:
        page.get_by_label(mode).check()
    page.get_by_role("button", name="Upload and check").click()


def map_unit_cost(page):
    page.wait_for_url("**/bulk-import/map/**")
    page.get_by_label("Unit cost").select_option("price")
    page.get_by_role("button", name="Use these columns and check the rows").click()


def wait_for_preview(page):
    expect(page.get_by_role("heading", name=re.compile("before importing it"))).to_be_visible(
        timeout=30_000
    )


@pytest.mark.parametrize(
    "price_header",
    [
        pytest.param("Unit cost", id="mapped"),
        pytest.param("price", id="matched"),
    ],
)
def test_the_whole_import(page, live_server, shots, tmp_path, tools, job_runner, price_header):
    make_staff("clerk", *PERMS)
    headers = [*MATCHING[:3], price_header, MATCHING[4]]
    path = stock_file(tmp_path, [*GOOD, NEGATIVE, UNKNOWN_CATEGORY], headers=headers)
    log_in(page, live_server, "clerk")

    # Upload, then map the one column that matches no field.
    page.goto(f"{live_server.url}/admin/catalog/product/")
    page.get_by_role("link", name="Import spreadsheet").click()
    page.get_by_label("Spreadsheet").set_input_files(str(path))
    shots(page, "flow-1-upload")
    page.get_by_role("button", name="Upload and check").click()
    if price_header != "price":
        page.wait_for_url("**/bulk-import/map/**")
        shots(page, "flow-2-mapping", dark=True)
        page.get_by_label(price_header).select_option("price")
        page.get_by_role("button", name="Use these columns and check the rows").click()

    # The preview: totals, the bad rows and the columns they failed in.
    wait_for_preview(page)
    assert Product.objects.count() == 0  # nothing is written before the confirm
    totals = page.locator(".bulkops-totals").inner_text()
    assert re.search(r"8\s+rows", totals) and re.search(r"6\s+valid", totals)
    assert re.search(r"2\s+with errors", totals)
    shots(page, "flow-3-preview", dark=True)
    page.get_by_role("link", name="Errors by row and column").click()
    errors = page.locator("table.bulkops-errors tbody").inner_text()
    assert re.search(
        rf"8\s+{price_header}\s+Ensure this value is greater than or equal to 0\.", errors
    )
    assert re.search(r"9\s+category\s+Object with name=Toys does not exist\.", errors)
    shots(page, "flow-4-errors")

    # The failed rows, downloaded as CSV, hold what was uploaded and why it failed.
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    rows = list(csv.reader(download.value.path().read_text(encoding="utf-8-sig").splitlines()))
    assert rows[0] == [*headers, "row", "errors"]
    assert rows[1][:2] == ["N-BAD", "Negative"] and rows[1][5] == "8"
    assert rows[1][6] == "price: Ensure this value is greater than or equal to 0."
    assert rows[2][0] == "N-TOY" and rows[2][5] == "9"
    assert len(rows) == 3

    # Fix one failed cell in place: that row becomes valid and joins the import.
    page.get_by_role("link", name="Failed rows (fix here)").click()
    page.get_by_label(f"Row 8, {price_header}").fill("4.50")
    page.get_by_role("button", name="Check the edited rows again").click()
    expect(page.locator(".messagelist")).to_contain_text("Row 8 is valid now")
    assert re.search(r"7\s+valid", page.locator(".bulkops-totals").inner_text())
    expect(page.get_by_label(f"Row 8, {price_header}")).to_have_count(0)
    shots(page, "flow-5-fixed")

    # Confirm: the bar runs to the end, the outcome is told, the rows are there.
    page.get_by_role("button", name="Confirm import of 7 rows").click()
    expect(page.locator(".bulkops-outcome")).to_contain_text(
        "Import finished with problems: created 7 products; 1 failed.", timeout=30_000
    )
    expect(page.locator("progress#bulkops-progress-bar")).to_have_attribute("value", "100")
    shots(page, "flow-6-done", dark=True)
    page.locator(".messagelist").get_by_role("link", name="See the products.").click()
    page.wait_for_url("**/admin/catalog/product/")
    table = page.locator("#result_list").inner_text()
    for sku in ["N-0", "N-5", "N-BAD"]:
        assert sku in table
    assert "N-TOY" not in table
    shots(page, "flow-7-changelist")
    assert Product.objects.get(sku="N-BAD").price == 4.5
    assert Product.objects.count() == 7


def test_jobs_list_after_an_import(page, live_server, shots, tmp_path, tools, in_process):
    make_staff("clerk", *PERMS)
    log_in(page, live_server, "clerk")
    upload(page, live_server, stock_file(tmp_path, GOOD))
    wait_for_preview(page)
    page.goto(f"{live_server.url}/admin/bulkops/bulkjob/")
    row = page.locator("#result_list tbody tr").first
    expect(row).to_contain_text("stock.xlsx")
    expect(row).to_contain_text("validated")
    shots(page, "jobs-changelist")


def test_cancel_the_import_at_the_preview(page, live_server, tmp_path, tools, in_process):
    make_staff("clerk", *PERMS)
    log_in(page, live_server, "clerk")
    upload(page, live_server, stock_file(tmp_path, GOOD))
    wait_for_preview(page)
    page.get_by_role("button", name="Cancel import").click()
    expect(page.locator(".messagelist")).to_contain_text("The job was cancelled")
    expect(page.locator("[data-status-label]")).to_have_text("cancelled")
    assert Product.objects.count() == 0
    assert BulkJob.objects.get().status == BulkJob.CANCELLED


def test_staff_without_add_permission_get_no_create_mode(page, live_server, shots, tools):
    make_staff("editor", "catalog.change_product", "catalog.view_product")
    ProductFactory(sku="E-1", category=tools)
    log_in(page, live_server, "editor")
    page.goto(f"{live_server.url}/admin/catalog/product/bulk-import/")
    modes = page.locator("fieldset#id_mode")
    expect(modes.get_by_role("radio")).to_have_count(1)
    expect(modes.get_by_label(re.compile("^Update"))).to_be_checked()
    expect(modes.get_by_label(re.compile("^Create"))).to_have_count(0)
    shots(page, "upload-update-only")


def test_another_users_job_is_not_reachable(page, live_server, tmp_path, tools, in_process):
    make_staff("ann", *PERMS)
    make_staff("bob", *PERMS)
    log_in(page, live_server, "ann")
    upload(page, live_server, stock_file(tmp_path, GOOD))
    wait_for_preview(page)
    job_page = page.url
    page.get_by_role("button", name="Log out").click()

    log_in(page, live_server, "bob")
    response = page.goto(job_page)
    assert response.status == 404
    page.goto(f"{live_server.url}/admin/bulkops/bulkjob/")
    expect(page.locator("#changelist")).to_contain_text("0 bulk jobs")


def test_a_remembered_mapping_is_offered_on_the_second_upload(
    page, live_server, shots, tmp_path, tools, in_process
):
    make_staff("clerk", *PERMS)
    log_in(page, live_server, "clerk")
    # The first upload's mapping is remembered when it is confirmed (whatever the job does).
    path = stock_file(tmp_path, GOOD, headers=HEADERS)
    upload(page, live_server, path)
    map_unit_cost(page)
    page.wait_for_url("**/admin/bulkops/bulkjob/**")
    # Jobs run in this process here: the job has gone as far as it can; end it, so that
    # the second upload is not refused as one "while the first is validating".
    cancel = page.get_by_role("button", name=re.compile("^Cancel (job|import)$"))
    if cancel.count():
        cancel.click()

    upload(page, live_server, path)
    page.wait_for_url("**/bulk-import/map/**")
    expect(page.locator("#bulkops-remembered")).to_contain_text("These headers were mapped before")
    expect(page.get_by_label("Unit cost")).to_have_value("price")
    shots(page, "mapping-remembered")


@pytest.mark.parametrize("kind", ["zip bomb", "password", "only headers"])
def test_bad_files_get_an_admin_message(page, live_server, shots, tmp_path, tools, kind):
    make_staff("clerk", *PERMS)
    name, data, phrase = bad_file(kind)
    path = tmp_path / name
    path.write_bytes(data)
    log_in(page, live_server, "clerk")
    upload(page, live_server, path)
    expect(page.locator(".messagelist .error")).to_contain_text(phrase)
    expect(page.get_by_role("heading", name="Import products from a spreadsheet")).to_be_visible()
    assert BulkJob.objects.count() == 0
    shots(page, f"bad-file-{kind.replace(' ', '-')}", phone=False)


def test_the_progress_bar_follows_the_job_without_reloading(page, live_server):
    """The job page polls its status: the bar moves as chunks commit, with no reload; a
    change of status reloads the page to show the outcome."""
    from tests.admin.jobs import make_job

    clerk = make_staff("clerk", "catalog.add_product", "catalog.view_product")
    job = make_job(clerk, rows=1000, status=BulkJob.RUNNING)
    BulkJob.objects.filter(pk=job.pk).update(stage=BulkJob.STAGE_WRITE, rows_written=300)
    log_in(page, live_server, "clerk")
    page.goto(f"{live_server.url}/admin/bulkops/bulkjob/{job.pk}/change/")
    bar = page.locator("progress#bulkops-progress-bar")
    expect(bar).to_have_attribute("value", "30")
    page.evaluate("window.bulkopsSameDocument = true")

    BulkJob.objects.filter(pk=job.pk).update(rows_written=700, created=700)
    expect(bar).to_have_attribute("value", "70", timeout=10_000)
    assert page.evaluate("window.bulkopsSameDocument === true")  # moved by polling

    BulkJob.objects.filter(pk=job.pk).update(
        status=BulkJob.COMPLETED, stage=BulkJob.STAGE_DONE, rows_written=1000, created=1000
    )
    expect(page.locator(".bulkops-outcome")).to_be_visible(timeout=10_000)
    assert page.evaluate("window.bulkopsSameDocument === undefined")  # reloaded
    expect(bar).to_have_attribute("value", "100")
