"""Export from the admin, import the file again: nothing changes, no header is edited.

Each catalog model is exported through django-import-export's admin export (the
resource bulkops builds from the serializer) in CSV and XLSX, then imported again
with ``bulk_import`` as an upsert (an update by id for Order, which has no natural
key). Every field of every row must be as it was, and no row may fail.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.forms.models import model_to_dict

from bulkops.admin.bulkmodel import bulk_model_for
from bulkops.admin.resources import resource_for
from project.catalog.models import Category, Customer, Order, Product
from tests.factories import CategoryFactory, CustomerFactory, OrderFactory, ProductFactory

pytestmark = pytest.mark.django_db

FORMATS = {"csv": 0, "xlsx": 1}  # positions in BulkImportExportMixin's export formats
MODES = {Category: "upsert", Product: "upsert", Customer: "upsert", Order: "update"}


@pytest.fixture
def catalog():
    tools = CategoryFactory(name="Tools")
    garden = CategoryFactory(name="Gärten & Höfe")
    CategoryFactory(name="=SUM(A1)")  # a name a spreadsheet would run as a formula
    ProductFactory(
        sku="00123", name="Hammer, claw", category=tools, price=Decimal("1234.50"), quantity=0
    )
    ProductFactory(
        sku="P-2",
        name='Saw "long"\nsecond line',
        category=garden,
        price=Decimal("0.05"),
        quantity=1_000_000,
        active=False,
        released=datetime.date(2024, 2, 29),
    )
    ann = CustomerFactory(email="ann@example.com", name="Ann Æbelø", country="DK")
    bob = CustomerFactory(email="bob@example.com", name="Bob", country="US")
    OrderFactory(
        customer=ann,
        product=Product.objects.get(sku="00123"),
        quantity=3,
        placed_at=datetime.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=datetime.UTC),
    )
    OrderFactory(
        customer=bob,
        product=Product.objects.get(sku="P-2"),
        quantity=1,
        placed_at=datetime.datetime(2023, 12, 31, 23, 59, 59, tzinfo=datetime.UTC),
    )


def snapshot(model):
    return [model_to_dict(obj) | {"id": obj.pk} for obj in model.objects.order_by("pk")]


def export(client, model, fmt) -> bytes:
    opts = model._meta
    resource = resource_for(bulk_model_for(model))
    data = {"format": FORMATS[fmt], "resource": 0}
    for name in resource().get_export_order():
        data[f"{resource.__name__.lower()}_{name}"] = "on"
    response = client.post(f"/admin/{opts.app_label}/{opts.model_name}/export/", data)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Disposition"].endswith(f'.{fmt}"')
    return response.content


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("model", [Category, Product, Customer, Order])
def test_export_then_import_changes_nothing(admin_client, catalog, tmp_path, model, fmt):
    before = snapshot(model)
    content = export(admin_client, model, fmt)
    path = tmp_path / f"export.{fmt}"
    path.write_bytes(content)

    out = StringIO()
    call_command(
        "bulk_import", model._meta.label, str(path), "--mode", MODES[model], stdout=out
    )  # exits 1 (SystemExit) if any row failed

    assert f"updated {len(before):,}" in out.getvalue().lower()
    assert "failed 0" in out.getvalue()
    assert snapshot(model) == before


@pytest.mark.parametrize("model", [Category, Product, Customer, Order])
def test_export_columns_are_the_import_columns(admin_client, catalog, model):
    from bulkops.admin.columns import import_columns

    header = export(admin_client, model, "csv").decode("utf-8-sig").splitlines()[0]
    assert header.split(",") == import_columns(bulk_model_for(model))
