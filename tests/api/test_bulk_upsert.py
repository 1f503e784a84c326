"""PUT /api/<resource>/bulk/: create or update by the natural key."""

from decimal import Decimal

import pytest

from project.catalog.models import Order, Product
from tests.api.helpers import bulk, new_product, skus
from tests.factories import OrderFactory

pytestmark = pytest.mark.django_db


def test_creates_and_updates_in_one_batch(api, products):
    items = [new_product("E-0", price="3.00", _ref="old"), new_product("NEW", _ref="new")]

    response = bulk(api, "put", "products", {"items": items})

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed"
    assert body["summary"]["created"] == 1 and body["summary"]["updated"] == 1
    updated, created = body["results"]
    assert (updated["ref"], updated["status"], updated["id"]) == ("old", "updated", products[0].pk)
    assert (created["ref"], created["status"]) == ("new", "created")
    assert Product.objects.get(sku="E-0").price == Decimal("3.00")
    assert Product.objects.get(sku="NEW").pk == created["id"]


def test_an_item_without_its_natural_key_is_an_error(api, products):
    item = new_product("X")
    del item["sku"]

    body = bulk(api, "put", "products", {"items": [item]}).json()

    assert body["results"][0]["errors"] == {"sku": ["This field is required."]}


def test_atomic_all_writes_nothing_when_an_item_fails(api, products):
    items = [new_product("E-0", price="3.00"), new_product("NEW"), new_product("BAD", price="x")]

    body = bulk(api, "put", "products", {"items": items, "atomic": "all"}).json()

    assert [r["status"] for r in body["results"]] == ["rolled_back", "rolled_back", "error"]
    assert "NEW" not in skus()
    assert Product.objects.get(sku="E-0").price == Decimal("10.00")


def test_a_resource_without_a_natural_key_answers_400(api):
    order = OrderFactory()
    item = {
        "id": order.pk,
        "customer": order.customer.email,
        "product": order.product.sku,
        "quantity": 5,
        "placed_at": "2024-05-01T12:00:00Z",
    }

    response = bulk(api, "put", "orders", {"items": [item]})

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_envelope"
    assert "natural key" in body["message"] and "PATCH" in body["message"]
    assert Order.objects.get().quantity == order.quantity
