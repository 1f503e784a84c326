"""The job page, its actions and the jobs changelist (test client, jobs made in the database)."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from openpyxl import load_workbook

from bulkops.jobs.models import BulkJob
from tests.admin.conftest import make_staff
from tests.admin.jobs import failed_row, make_job

pytestmark = pytest.mark.django_db

PRICE_ERROR = "Ensure this value is greater than or equal to 0."


def page_url(job, **query):
    from urllib.parse import urlencode

    return f"/admin/bulkops/bulkjob/{job.pk}/change/" + (f"?{urlencode(query)}" if query else "")


def action_url(job, action):
    return f"/admin/bulkops/bulkjob/{job.pk}/{action}/"


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def owner(db):
    return make_staff(
        "owner", "catalog.add_product", "catalog.change_product", "catalog.view_product"
    )


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


def test_preview_shows_totals_and_the_confirm_button(owner_client, owner):
    job = make_job(owner, rows=10, failed=[failed_row(0), failed_row(1)])
    response = owner_client.get(page_url(job))

    assert response.status_code == 200
    html = response.content.decode()
    assert response.context["valid_rows"] == 8
    assert response.context["waiting"] is True
    assert response.context["can_confirm"] is True
    assert "Confirm import of 8 rows" in html
    assert f'action="{action_url(job, "confirm")}"' in html
    assert "Nothing has been written yet." in html


def test_preview_defaults_to_the_failed_rows_with_editable_bad_cells(owner_client, owner):
    job = make_job(owner, failed=[failed_row(0, price="-5")])
    response = owner_client.get(page_url(job))

    assert response.context["view"] == "rows"
    (row,) = response.context["failed_rows"]
    assert row.row == 2
    cells = {cell.header: cell for cell in row.cells}
    assert cells["Unit price"].value == "-5"
    assert cells["Unit price"].messages == [PRICE_ERROR]
    assert cells["Name"].messages == []
    html = response.content.decode()
    assert 'name="cell-2-price" value="-5"' in html
    assert 'aria-label="Row 2, Unit price"' in html
    assert 'aria-invalid="true"' in html


def test_errors_view_names_row_column_and_message(owner_client, owner):
    job = make_job(
        owner,
        failed=[failed_row(0), failed_row(1)],
        errors=[
            {"price": [PRICE_ERROR]},
            {
                "category": ["Object with name=Toys does not exist."],
                "non_field_errors": ["Row 4 has the same SKU."],
            },
        ],
    )
    response = owner_client.get(page_url(job, view="errors"))
    lines = [(line.row, line.column, line.message) for line in response.context["error_lines"]]
    assert lines == [
        (2, "Unit price", PRICE_ERROR),
        (3, "Category", "Object with name=Toys does not exist."),
        (3, "", "Row 4 has the same SKU."),
    ]
    assert "whole row" in response.content.decode()


def test_errors_are_paged_never_the_whole_file(owner_client, owner):
    job = make_job(owner, rows=500, failed=[failed_row(i) for i in range(120)])
    first = owner_client.get(page_url(job, view="errors"))
    last = owner_client.get(page_url(job, view="errors", page=3))
    rows_view = owner_client.get(page_url(job, view="rows", page=2))

    assert len(first.context["error_lines"]) == 50
    assert first.context["error_lines"][0].row == 2
    assert len(last.context["error_lines"]) == 20
    assert last.context["error_lines"][-1].row == 121
    assert len(rows_view.context["failed_rows"]) == 25
    assert rows_view.context["failed_rows"][0].row == 27
    assert "Page 3 of 3 (120 failed rows)" in last.content.decode()
    # An out-of-range page shows the last one rather than failing.
    assert owner_client.get(page_url(job, view="errors", page=99)).status_code == 200


def test_hostile_cells_are_shown_escaped(owner_client, owner):
    job = make_job(
        owner,
        failed=[failed_row(0, name="<script>alert(1)</script>", category="=cmd|' /C calc'!A0")],
    )
    html = owner_client.get(page_url(job)).content.decode()
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    html = owner_client.get(page_url(job, view="errors")).content.decode()
    assert "<script>alert(1)" not in html


def test_failed_rows_download_as_csv_with_errors_column(owner_client, owner):
    job = make_job(owner, failed=[failed_row(0, name="=cmd|' /C calc'!A0"), failed_row(1)])
    response = owner_client.get(action_url(job, "failed-rows.csv").rstrip("/"))

    assert response.status_code == 200
    assert 'filename="stock-failed-rows.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0] == ["SKU", "Name", "Category", "Unit price", "Qty", "row", "errors"]
    assert rows[1] == [
        "B-0",
        "'=cmd|' /C calc'!A0",
        "Tools",
        "'-1",
        "2",
        "2",
        f"price: {PRICE_ERROR}",
    ]
    assert len(rows) == 3


def test_failed_rows_download_in_the_uploaded_workbook_format(owner_client, owner):
    job = make_job(owner, failed=[failed_row(0)])
    html = owner_client.get(page_url(job)).content.decode()
    assert "failed-rows.xlsx" in html and "failed-rows.csv" in html
    response = owner_client.get(f"/admin/bulkops/bulkjob/{job.pk}/failed-rows.xlsx")
    sheet = load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == ("SKU", "Name", "Category", "Unit price", "Qty", "row", "errors")
    assert values[1][0] == "B-0" and values[1][5] == 2


def test_unknown_download_formats_are_404(owner_client, owner):
    job = make_job(owner, failed=[failed_row(0)])
    assert owner_client.get(f"/admin/bulkops/bulkjob/{job.pk}/failed-rows.ods").status_code == 404


def test_status_json(owner_client, owner):
    job = make_job(owner, rows=10, failed=[failed_row(0)])
    response = owner_client.get(f"/admin/bulkops/bulkjob/{job.pk}/status.json")
    data = json.loads(response.content)
    assert "no-store" in response["Cache-Control"]
    assert data["status"] == "validated"
    assert data["waiting_for_confirmation"] is True
    assert data["progress"]["total"] == 10
    assert data["progress"]["percent"] == 100.0
    assert data["text"] == "10 of 10 rows validated."
    assert data["chunks"] == {"validated": 1}


def test_confirm_moves_the_job_on_once(owner_client, owner, django_capture_on_commit_callbacks):
    job = make_job(owner, rows=10, failed=[failed_row(0)])
    with django_capture_on_commit_callbacks() as callbacks:
        first = owner_client.post(action_url(job, "confirm"), follow=True)
    job.refresh_from_db()
    confirmed_at = job.confirmed_at

    assert "Import confirmed: writing 9 rows." in messages_of(first)
    assert job.status == BulkJob.QUEUED and confirmed_at is not None
    assert len(callbacks) == 1  # the write stage is sent once, on commit

    with django_capture_on_commit_callbacks() as callbacks:
        replay = owner_client.post(action_url(job, "confirm"), follow=True)
    job.refresh_from_db()
    assert "This import was confirmed before; it is not run twice." in messages_of(replay)
    assert job.confirmed_at == confirmed_at
    assert callbacks == []


def test_confirm_is_post_only(owner_client, owner):
    job = make_job(owner)
    assert owner_client.get(action_url(job, "confirm")).status_code == 405
    job.refresh_from_db()
    assert job.confirmed_at is None


def test_confirm_needs_the_csrf_token(owner):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    job = make_job(owner)
    assert client.post(action_url(job, "confirm")).status_code == 403
    job.refresh_from_db()
    assert job.confirmed_at is None


def test_another_staff_users_job_is_not_there(client, owner):
    job = make_job(owner, failed=[failed_row(0)])
    client.force_login(make_staff("other", "catalog.add_product", "catalog.change_product"))
    for url in (
        page_url(job),
        f"/admin/bulkops/bulkjob/{job.pk}/status.json",
        f"/admin/bulkops/bulkjob/{job.pk}/failed-rows.csv",
    ):
        assert client.get(url).status_code == 404, url
    for action in ("confirm", "cancel", "retry", "edit"):
        assert client.post(action_url(job, action)).status_code == 404, action
    job.refresh_from_db()
    assert job.status == BulkJob.VALIDATED and job.confirmed_at is None


def test_a_superuser_sees_another_users_preview_but_cannot_confirm_or_edit_it(client, owner):
    job = make_job(owner, failed=[failed_row(0)])
    client.force_login(make_staff("root", superuser=True))
    response = client.get(page_url(job))
    assert response.status_code == 200
    assert response.context["can_confirm"] is False
    assert response.context["editable"] is False
    assert "Only owner can confirm this import." in response.content.decode()

    confirm = client.post(action_url(job, "confirm"), follow=True)
    edit = client.post(action_url(job, "edit"), {"page": 1, "cell-2-price": "5"}, follow=True)
    assert "Only owner can confirm this import." in messages_of(confirm)
    assert "Only owner can change this import." in messages_of(edit)
    job.refresh_from_db()
    assert job.confirmed_at is None


def test_losing_the_permission_after_the_upload_refuses_the_confirm(owner_client, owner):
    job = make_job(owner)
    owner.user_permissions.remove(owner.user_permissions.get(codename="add_product"))
    response = owner_client.post(action_url(job, "confirm"), follow=True)
    assert "You no longer have the permission to create products." in messages_of(response)
    job.refresh_from_db()
    assert job.confirmed_at is None


def test_cancel_a_waiting_preview(owner_client, owner):
    job = make_job(owner, failed=[failed_row(0)])
    response = owner_client.post(action_url(job, "cancel"), follow=True)
    job.refresh_from_db()
    assert job.status == BulkJob.CANCELLED
    assert "The job was cancelled; nothing more of it will be written." in messages_of(response)
    again = owner_client.post(action_url(job, "confirm"), follow=True)
    assert "Only a validated job can be confirmed; this one is cancelled." in messages_of(again)


def test_a_finished_job_shows_its_outcome_and_a_link_to_the_rows(owner_client, owner):
    job = make_job(owner, rows=10, status=BulkJob.COMPLETED, created=10)
    response = owner_client.get(page_url(job))
    assert response.context["outcome"] == "Import finished: created 10 products."
    assert [str(m) for m in response.context["messages"]] == [
        'Import finished: created 10 products. <a href="/admin/catalog/product/">'
        "See the products.</a>"
    ]
    assert response.context["active"] is False


def test_edit_with_no_change_says_so(owner_client, owner):
    job = make_job(owner, failed=[failed_row(0)])
    response = owner_client.post(
        action_url(job, "edit"), {"page": 1, "cell-2-price": "-1"}, follow=True
    )
    assert "No cell was changed." in messages_of(response)


def test_edits_only_after_validation_and_before_confirm(owner_client, owner):
    job = make_job(
        owner, failed=[failed_row(0)], status=BulkJob.RUNNING, confirmed_at="2025-01-01T00:00:00Z"
    )
    response = owner_client.post(
        action_url(job, "edit"), {"page": 1, "cell-2-price": "5"}, follow=True
    )
    assert "Rows can be fixed only before the import is confirmed." in messages_of(response)


# -- the jobs changelist -----------------------------------------------------------------


def test_staff_see_their_own_jobs_only(client, owner):
    mine = make_job(owner, filename="mine.xlsx")
    theirs = make_job(make_staff("other"), filename="theirs.xlsx", model="catalog.customer")
    client.force_login(owner)
    response = client.get("/admin/bulkops/bulkjob/")
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [mine]
    html = response.content.decode()
    assert "mine.xlsx" in html and "theirs.xlsx" not in html
    # The model filter offers only the models of the visible jobs.
    assert "?model=catalog.product" in html and "?model=catalog.customer" not in html
    assert theirs.pk


def test_superusers_see_every_job_and_the_rq_dashboard(admin_client, owner):
    make_job(owner, filename="a.xlsx")
    make_job(make_staff("other"), filename="b.xlsx")
    response = admin_client.get("/admin/bulkops/bulkjob/")
    assert len(response.context["cl"].result_list) == 2
    assert response.context["rq_dashboard_url"] == "/admin/django_rq/dashboard/"
    assert 'href="/admin/django_rq/dashboard/"' in response.content.decode()
    assert admin_client.get("/admin/django_rq/dashboard/").status_code == 200


@pytest.mark.parametrize(
    "query, expected",
    [
        ("status=validated", 1),
        ("status=completed", 1),
        ("source=admin", 2),
        ("model=catalog.product", 2),
        ("model=catalog.order", 0),
    ],
)
def test_changelist_filters(admin_client, owner, query, expected):
    make_job(owner)
    make_job(owner, status=BulkJob.COMPLETED)
    response = admin_client.get(f"/admin/bulkops/bulkjob/?{query}")
    assert len(response.context["cl"].result_list) == expected


def test_changelist_columns_and_progress(admin_client, owner):
    make_job(owner, rows=1234)
    html = admin_client.get("/admin/bulkops/bulkjob/").content.decode()
    for column in ("status", "model", "user", "source", "rows", "progress", "created"):
        assert f">{column.capitalize()}<" in html or f">{column}<" in html.lower(), column
    assert '<progress max="100" value="100.0" aria-label="waiting for confirmation">' in html
    assert "100% · waiting for confirmation" in html
    assert "1,234" in html
    assert re.search(r'<time datetime="[^"]+" title="[^"]+">\w{3} \d{1,2}, \d\d:\d\d</time>', html)


def test_cancel_action_on_the_changelist(admin_client, owner):
    waiting = make_job(owner)
    done = make_job(owner, status=BulkJob.COMPLETED)
    response = admin_client.post(
        "/admin/bulkops/bulkjob/",
        {"action": "cancel_jobs", "_selected_action": [waiting.pk, done.pk]},
        follow=True,
    )
    waiting.refresh_from_db()
    assert waiting.status == BulkJob.CANCELLED
    shown = messages_of(response)
    assert "1 job cancelled." in shown
    assert any("already ended (completed)" in m for m in shown)


def test_jobs_cannot_be_added_changed_or_deleted_in_the_admin(admin_client, owner):
    job = make_job(owner)
    assert admin_client.get("/admin/bulkops/bulkjob/add/").status_code == 403
    assert admin_client.get(f"/admin/bulkops/bulkjob/{job.pk}/delete/").status_code == 403
    assert admin_client.post(page_url(job), {"status": "completed"}).status_code == 405
