"""PATCH /api/<resource>/bulk/: partial update of objects named by id or natural key."""

from decimal import Decimal

import pytest
from rest_framework.test import APIRequestFactory, force_authenticate

from project.catalog.models import Order, Product
from project.catalog.views import ProductViewSet
from tests.api.helpers import bulk
from tests.factories import OrderFactory

pytestmark = pytest.mark.django_db


def prices() -> dict[str, Decimal]:
    return dict(Product.objects.values_list("sku", "price"))


def test_updates_objects_named_by_id_or_natural_key_leaving_other_fields(api, products):
    items = [{"id": products[0].pk, "price": "1.00"}, {"sku": "E-1", "name": "Renamed"}]

    response = bulk(api, "patch", "products", {"items": items})

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed"
    assert body["summary"]["updated"] == 2
    assert [r["id"] for r in body["results"]] == [products[0].pk, products[1].pk]
    assert body["results"][1]["data"]["name"] == "Renamed"
    assert body["results"][1]["data"]["price"] == "10.00"  # untouched by a partial update
    assert prices()["E-0"] == Decimal("1.00")
    assert Product.objects.get(sku="E-1").name == "Renamed"


def test_a_missing_object_is_that_items_error(api, products):
    items = [{"sku": "E-0", "price": "1.00"}, {"sku": "NOPE", "price": "2.00"}, {"id": 999_999}]

    body = bulk(api, "patch", "products", {"items": items}).json()

    assert body["status"] == "partial"
    assert body["results"][1] == {
        "index": 1,
        "status": "error",
        "errors": {"sku": ["No product with sku=NOPE."]},
    }
    assert body["results"][2]["errors"] == {"id": ["No product with id=999999."]}
    assert prices()["E-0"] == Decimal("1.00")


def test_an_item_naming_no_object_is_an_error(api, products):
    body = bulk(api, "patch", "products", {"items": [{"price": "1.00"}]}).json()
    assert body["results"][0]["errors"] == {
        "non_field_errors": ["Each item must name its object by 'id' or by 'sku'."]
    }


def test_atomic_all_with_a_missing_object_updates_nothing(api, products):
    items = [{"sku": "E-0", "price": "1.00"}, {"sku": "NOPE", "price": "2.00"}]

    body = bulk(api, "patch", "products", {"items": items, "atomic": "all"}).json()

    assert [r["status"] for r in body["results"]] == ["rolled_back", "error"]
    assert set(prices().values()) == {Decimal("10.00")}


def test_atomic_chunk_keeps_the_chunks_without_errors(api, products):
    items = [{"sku": f"E-{i}", "price": "-1" if i == 3 else "1.00"} for i in range(5)]

    body = bulk(
        api, "patch", "products", {"items": items, "atomic": "chunk", "chunk_size": 2}
    ).json()

    assert [r["status"] for r in body["results"]] == [
        "updated",
        "updated",
        "rolled_back",
        "error",
        "updated",
    ]
    assert prices() == {
        "E-0": Decimal("1.00"),
        "E-1": Decimal("1.00"),
        "E-2": Decimal("10.00"),
        "E-3": Decimal("10.00"),
        "E-4": Decimal("1.00"),
    }


def test_an_object_outside_the_viewsets_queryset_cannot_be_reached(admin, products):
    """``get_queryset()`` bounds what an update can reach: an object the user may not see
    is reported as missing, and is not changed."""

    class OnlyE0(ProductViewSet):
        def get_queryset(self):
            return super().get_queryset().filter(sku="E-0")

    view = OnlyE0.as_view({"patch": "bulk_update"})
    items = [{"sku": "E-0", "price": "1.00"}, {"id": products[1].pk, "price": "1.00"}]
    request = APIRequestFactory().patch("/api/products/bulk/", {"items": items}, format="json")
    force_authenticate(request, admin)

    body = view(request).data

    assert [r["status"] for r in body["results"]] == ["updated", "error"]
    assert body["results"][1]["errors"] == {"id": [f"No product with id={products[1].pk}."]}
    assert prices()["E-1"] == Decimal("10.00")


def test_orders_without_a_natural_key_are_named_by_id(api):
    order = OrderFactory(quantity=1)

    body = bulk(api, "patch", "orders", {"items": [{"id": order.pk, "quantity": 7}]}).json()

    assert body["status"] == "completed"
    assert Order.objects.get().quantity == 7
