"""The upload page, the template downloads and the changelist button (test client)."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from openpyxl import load_workbook

from bulkops.jobs.models import BulkJob
from tests.admin.conftest import make_staff
from tests.admin.files import BAD_FILES, bad_file

pytestmark = pytest.mark.django_db

UPLOAD = "/admin/catalog/product/bulk-import/"


def upload(client, name: str, data: bytes, url: str = UPLOAD, **options):
    fields = {"mode": "create", "atomic": "none", "chunk_size": 1000, **options}
    return client.post(url, {"file": SimpleUploadedFile(name, data), **fields})


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def modes_offered(response) -> list[str]:
    return [value for value, _ in response.context["form"].fields["mode"].choices]


def test_changelist_has_import_and_export_buttons(admin_client):
    html = admin_client.get("/admin/catalog/product/").content.decode()
    assert f'href="{UPLOAD}"' in html
    assert ">Import spreadsheet<" in html
    assert 'href="/admin/catalog/product/export/' in html


def test_changelist_hides_import_from_staff_who_may_only_view(client):
    client.force_login(make_staff("viewer", "catalog.view_product"))
    response = client.get("/admin/catalog/product/")
    assert response.status_code == 200
    assert "Import spreadsheet" not in response.content.decode()
    assert client.get(UPLOAD).status_code == 403


def test_changelist_in_a_popup_has_no_import_button(admin_client):
    html = admin_client.get("/admin/catalog/product/?_popup=1&_to_field=id").content.decode()
    assert "Import spreadsheet" not in html


@pytest.mark.parametrize(
    "perms, url, modes",
    [
        (["add_product"], UPLOAD, ["create"]),
        (["change_product"], UPLOAD, ["update"]),
        (["add_product", "change_product"], UPLOAD, ["create", "update", "upsert"]),
        # Order has no natural key: no upsert, whatever the permissions.
        (["add_order", "change_order"], "/admin/catalog/order/bulk-import/", ["create", "update"]),
    ],
)
def test_modes_follow_permissions(client, perms, url, modes):
    client.force_login(make_staff("clerk", *[f"catalog.{p}" for p in perms]))
    response = client.get(url)
    assert response.status_code == 200
    assert modes_offered(response) == modes


def test_a_mode_not_offered_cannot_be_posted(client):
    client.force_login(make_staff("clerk", "catalog.change_product"))
    response = upload(client, "p.csv", b"sku,name\nA,B\n", mode="create")
    assert response.status_code == 200
    assert "Select a valid choice" in str(response.context["form"].errors["mode"])


def test_anonymous_users_are_sent_to_the_login_page(client):
    response = client.get(UPLOAD)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_upload_page_lists_the_expected_columns(admin_client, tools):
    response = admin_client.get(UPLOAD)
    html = response.content.decode()
    columns = response.context["columns"]
    assert [c.name for c in columns] == [
        "sku",
        "name",
        "category",
        "price",
        "quantity",
        "active",
        "released",
    ]
    by_name = {c.name: c for c in columns}
    assert by_name["sku"].required == "key"
    assert by_name["price"].required == "required"
    assert by_name["released"].required == "optional"
    assert by_name["category"].format == "the name of an existing category"
    assert by_name["category"].example == "Tools"
    assert "number with up to 2 decimal places, 0 or more" in html
    assert 'href="/admin/catalog/product/bulk-import/template.csv"' in html


def test_order_columns_start_with_id(admin_client):
    response = admin_client.get("/admin/catalog/order/bulk-import/")
    columns = response.context["columns"]
    assert [c.name for c in columns] == ["id", "customer", "product", "quantity", "placed_at"]
    assert columns[0].required == "id"


def test_customer_country_format_uses_the_help_text(admin_client):
    columns = admin_client.get("/admin/catalog/customer/bulk-import/").context["columns"]
    country = next(c for c in columns if c.name == "country")
    assert country.format == "text, up to 2 characters (ISO 3166-1 alpha-2 code, e.g. DE)"
    assert country.example == "DE"


def test_csv_template_is_the_header_row(admin_client):
    response = admin_client.get(f"{UPLOAD}template.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="product-import-template.csv"' in response["Content-Disposition"]
    assert response.content.decode("utf-8-sig") == (
        "sku,name,category,price,quantity,active,released\r\n"
    )


def test_xlsx_template_has_the_header_row_and_a_column_guide(admin_client):
    response = admin_client.get(f"{UPLOAD}template.xlsx")
    book = load_workbook(io.BytesIO(response.content))
    first, guide = book.worksheets
    assert [c.value for c in first[1]] == [
        "sku",
        "name",
        "category",
        "price",
        "quantity",
        "active",
        "released",
    ]
    assert first.max_row == 1
    rows = list(guide.iter_rows(values_only=True))
    assert rows[0] == ("column", "required", "format", "example")
    assert rows[1][:2] == ("sku", "key")


def test_a_filled_in_template_reads_back_with_every_column_matched(admin_client, tools):
    from bulkops.admin.mapping import inspect_file
    from project.catalog.serializers import ProductSerializer

    for fmt in ("csv", "xlsx"):
        data = admin_client.get(f"{UPLOAD}template.{fmt}").content
        if fmt == "csv":
            data += b"A-1,Hammer,Tools,1.50,2,yes,2025-01-01\r\n"
        else:
            book = load_workbook(io.BytesIO(data))
            book.worksheets[0].append(["A-1", "Hammer", "Tools", 1.5, 2, True, None])
            out = io.BytesIO()
            book.save(out)
            data = out.getvalue()
        preview = inspect_file(io.BytesIO(data), f"t.{fmt}", serializer=ProductSerializer())
        assert preview.unmatched == []


@pytest.mark.parametrize("fmt", ["pdf", "json"])
def test_unknown_template_formats_are_404(admin_client, fmt):
    assert admin_client.get(f"{UPLOAD}template.{fmt}").status_code == 404


def test_templates_are_get_only(admin_client):
    assert admin_client.post(f"{UPLOAD}template.csv").status_code == 405


def test_upload_is_get_or_post_only(admin_client):
    assert admin_client.put(UPLOAD).status_code == 405
    assert admin_client.delete(UPLOAD).status_code == 405


def test_upload_post_needs_the_csrf_token(superuser):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    response = upload(client, "p.csv", b"sku\nA\n")
    assert response.status_code == 403


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_files_get_one_clear_message_and_no_job(admin_client, kind):
    name, data, phrase = bad_file(kind)
    response = upload(admin_client, name, data)

    assert response.status_code == 200
    form_errors = response.context["form"].errors.values()
    shown = messages_of(response) + [text for errors in form_errors for text in errors]
    assert any(phrase in text for text in shown), shown
    assert response.context["form"].is_bound  # the form is shown again, with the options
    assert not BulkJob.objects.exists()


def test_files_over_the_upload_limit_are_refused_before_reading(admin_client, settings):
    settings.BULKOPS = {"MAX_UPLOAD_BYTES": 1024}
    response = upload(admin_client, "p.csv", b"sku,name\n" + b"A,B\n" * 1000)
    assert response.context["form"].errors["file"] == [
        "The file is 4009 bytes, more than the limit of 1024 bytes; split it into smaller files."
    ]


def test_a_missing_required_column_stops_the_upload_with_the_engines_sentence(admin_client):
    response = upload(admin_client, "p.csv", b"sku,name\nA-1,Hammer\n")
    assert messages_of(response) == [
        "Columns 'category' and 'price' are required; the file has: sku, name"
    ]


def test_chunk_size_is_bounded(admin_client, settings):
    settings.BULKOPS = {"MAX_CHUNK_SIZE": 50}
    response = upload(admin_client, "p.csv", b"sku\nA\n", chunk_size=51)
    assert "Ensure this value is less than or equal to 50." in str(
        response.context["form"].errors["chunk_size"]
    )
