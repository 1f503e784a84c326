"""Throttles count every request of a batch, as they count direct calls; the batch
itself is a container and is not throttled."""

import pytest
from rest_framework.throttling import UserRateThrottle

from bulkops.throttling import BulkItemThrottle
from project.catalog.models import Product
from project.catalog.views import CustomerViewSet
from tests.batch.conftest import send

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr(BulkItemThrottle, "timer", lambda self: now[0])
    return now


def bulk_create(request_id: str, *skus: str) -> dict:
    items = [{"sku": s, "name": s, "category": "Tools", "price": "1.00"} for s in skus]
    return {
        "id": request_id,
        "method": "POST",
        "url": "/api/products/bulk/",
        "body": {"items": items},
    }


def test_the_item_throttle_counts_each_bulk_request(api, tools, settings, clock):
    settings.BULKOPS = {"THROTTLE_ITEMS": 5}

    response = send(
        api,
        {
            "requests": [
                bulk_create("a", "A-1", "A-2"),
                bulk_create("b", "B-1", "B-2", "B-3"),
                {**bulk_create("c", "C-1"), "depends_on": ["a", "b"]},
            ]
        },
    )

    a, b, c = response.json()["responses"]
    assert (a["status"], b["status"]) == (200, 200)
    assert c["status"] == 429
    assert c["headers"] == {"Retry-After": "60"}
    assert "throttled" in c["body"]["detail"]
    assert Product.objects.count() == 5
    # The same count holds for a direct call.
    direct = api.post("/api/products/bulk/", {"items": []}, format="json")
    assert direct.status_code == 200  # no items: nothing counted
    clock[0] += 61
    assert (
        api.post("/api/products/bulk/", bulk_create("d", "D-1")["body"], format="json").status_code
        == 200
    )


def test_a_drf_throttle_counts_each_request(api, customer, monkeypatch):
    class ThreePerMinute(UserRateThrottle):
        rate = "3/min"

    monkeypatch.setattr(CustomerViewSet, "throttle_classes", [ThreePerMinute])
    # A direct call counts first, then the batch's requests: one after another, so the
    # cache's read-then-write count is exact.
    assert api.get("/api/customers/").status_code == 200
    response = send(
        api,
        {
            "requests": [
                {"id": "a", "method": "GET", "url": "/api/customers/"},
                {"id": "b", "method": "GET", "url": "/api/customers/", "depends_on": ["a"]},
                {"id": "c", "method": "GET", "url": "/api/customers/", "depends_on": ["b"]},
                {"id": "other", "method": "GET", "url": "/api/categories/"},
            ]
        },
    )

    assert [r["status"] for r in response.json()["responses"]] == [200, 200, 429, 200]
    assert int(response.json()["responses"][2]["headers"]["Retry-After"]) > 0
    assert api.get("/api/customers/").status_code == 429


def test_the_batch_request_itself_is_not_throttled(api, monkeypatch):
    from project.catalog.views import CategoryViewSet

    class OnePerMinute(UserRateThrottle):
        rate = "1/min"

    monkeypatch.setattr(CategoryViewSet, "throttle_classes", [OnePerMinute])
    responses = [
        send(api, {"requests": [{"id": "a", "method": "GET", "url": "/api/categories/"}]})
        for _ in range(3)
    ]

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r.json()["responses"][0]["status"] for r in responses] == [200, 429, 429]
