"""POST /api/<resource>/bulk/: create every item, a result per item, each atomic mode."""

from datetime import UTC, datetime

import pytest
from rest_framework.test import APIRequestFactory, force_authenticate

from project.catalog.models import Category, Customer, Order, Product
from project.catalog.views import ProductViewSet
from tests.api.helpers import bulk, new_product, skus
from tests.factories import CustomerFactory, ProductFactory

pytestmark = pytest.mark.django_db

PRICE_ERROR = {"price": ["Ensure this value is greater than or equal to 0."]}


def test_creates_every_item_and_returns_the_single_endpoint_output(api, tools):
    items = [new_product("A-1", price="2.50", _ref="first"), new_product("A-2")]

    response = bulk(api, "post", "products", {"items": items})

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed"
    assert body["atomic"] == "none"
    assert body["dry_run"] is False
    assert body["summary"] == {
        "total": 2,
        "succeeded": 2,
        "failed": 0,
        "created": 2,
        "updated": 0,
        "deleted": 0,
        "rolled_back": 0,
        "replayed": 0,
    }
    first, second = body["results"]
    assert first["index"] == 0 and first["ref"] == "first" and first["status"] == "created"
    assert second["index"] == 1 and "ref" not in second
    for result in body["results"]:
        single = api.get(f"/api/products/{result['id']}/").json()
        assert result["data"] == single
    assert skus() == ["A-1", "A-2"]


def test_a_failing_item_is_its_own_error_and_the_others_are_written(api, tools):
    items = [new_product("A-1"), new_product("A-2", price="-1"), new_product("A-3")]

    body = bulk(api, "post", "products", {"items": items, "atomic": "none"}).json()

    assert body["status"] == "partial"
    assert [r["status"] for r in body["results"]] == ["created", "error", "created"]
    assert body["results"][1] == {"index": 1, "status": "error", "errors": PRICE_ERROR}
    assert skus() == ["A-1", "A-3"]


def test_atomic_all_writes_nothing_and_rolls_back_the_valid_items(api, tools):
    items = [new_product("A-1"), new_product("A-2", price="-1"), new_product("A-3")]

    response = bulk(api, "post", "products", {"items": items, "atomic": "all"})

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "failed"
    assert body["atomic"] == "all"
    assert [r["status"] for r in body["results"]] == ["rolled_back", "error", "rolled_back"]
    assert body["summary"]["rolled_back"] == 2
    assert skus() == []


def test_atomic_chunk_rolls_back_only_the_chunk_with_an_error(api, tools):
    items = [new_product(f"A-{i}", price="-1" if i == 2 else "1.00") for i in range(5)]

    body = bulk(
        api, "post", "products", {"items": items, "atomic": "chunk", "chunk_size": 2}
    ).json()

    assert [r["status"] for r in body["results"]] == [
        "created",
        "created",
        "error",
        "rolled_back",
        "created",
    ]
    assert skus() == ["A-0", "A-1", "A-4"]


def test_dry_run_validates_and_writes_nothing(api, tools):
    items = [new_product("A-1"), new_product("A-2", category="Nope")]

    body = bulk(api, "post", "products", {"items": items, "dry_run": True}).json()

    assert body["dry_run"] is True
    assert body["results"][0]["status"] == "created"
    assert "id" not in body["results"][0]
    assert body["results"][1]["errors"] == {"category": ["Object with name=Nope does not exist."]}
    assert skus() == []


def test_duplicates_inside_the_batch_and_clashes_with_the_database_are_item_errors(api, tools):
    ProductFactory(sku="TAKEN", category=tools)
    items = [new_product("DUP"), new_product("DUP"), new_product("TAKEN")]

    body = bulk(api, "post", "products", {"items": items}).json()

    assert [r["status"] for r in body["results"]] == ["error", "error", "error"]
    assert "item 1" in body["results"][0]["errors"]["sku"][0]
    assert body["results"][2]["errors"] == {"sku": ["product with this SKU already exists."]}
    assert skus() == ["TAKEN"]


def test_every_catalog_resource_takes_foreign_keys_by_natural_key(api, tools):
    product = ProductFactory(sku="SKU-1", category=tools)
    CustomerFactory(email="ann@example.com")

    assert bulk(api, "post", "categories", {"items": [{"name": "Garden"}]}).status_code == 200
    customers = {"items": [{"email": "bob@example.com", "name": "Bob", "country": "DE"}]}
    assert bulk(api, "post", "customers", customers).json()["status"] == "completed"
    order = {
        "customer": "ann@example.com",
        "product": "SKU-1",
        "quantity": 2,
        "placed_at": "2024-05-01T12:00:00Z",
    }
    body = bulk(api, "post", "orders", {"items": [order]}).json()

    assert body["status"] == "completed"
    assert body["results"][0]["data"]["customer"] == "ann@example.com"
    assert Category.objects.filter(name="Garden").exists()
    assert Customer.objects.filter(email="bob@example.com").exists()
    created = Order.objects.get()
    assert (created.product, created.quantity) == (product, 2)
    assert created.placed_at == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_an_empty_batch_is_completed(api):
    body = bulk(api, "post", "products", {"items": []}).json()
    assert body["status"] == "completed"
    assert body["summary"]["total"] == 0 and body["results"] == []


def test_the_viewset_default_atomic_applies_when_the_request_names_none(admin, tools):
    view = ProductViewSet.as_view({"post": "bulk_create"}, bulk_default_atomic="all")
    items = [new_product("A-1"), new_product("A-2", price="-1")]
    request = APIRequestFactory().post("/api/products/bulk/", {"items": items}, format="json")
    force_authenticate(request, admin)

    body = view(request).data

    assert body["atomic"] == "all"
    assert [r["status"] for r in body["results"]] == ["rolled_back", "error"]
    assert skus() == []


def test_the_global_default_atomic_applies_otherwise(api, tools, settings):
    settings.BULKOPS = {"DEFAULT_ATOMIC": "all"}
    body = bulk(api, "post", "products", {"items": [new_product("A-1")]}).json()
    assert body["atomic"] == "all"


def test_queries_do_not_grow_with_the_batch(api, tools, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def create(prefix: str, count: int):
        items = [new_product(f"{prefix}-{i}") for i in range(count)]
        return bulk(api, "post", "products", {"items": items}).json()["summary"]["created"]

    with CaptureQueriesContext(connection) as small:
        assert create("S", 10) == 10
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert create("L", 100) == 100  # one INSERT on SQLite too (999 parameters)
    assert Product.objects.count() == 110
