"""BulkItemThrottle: THROTTLE_ITEMS items per user per minute, 429 with Retry-After."""

import pytest

from bulkops.throttling import BulkItemThrottle
from tests.api.helpers import bulk, new_product, skus

pytestmark = pytest.mark.django_db


def batch(prefix: str, count: int) -> dict:
    return {"items": [new_product(f"{prefix}-{i}") for i in range(count)]}


@pytest.fixture
def clock(monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr(BulkItemThrottle, "timer", lambda self: now[0])
    return now


def test_items_are_counted_not_requests(api, tools, settings, clock):
    settings.BULKOPS = {"THROTTLE_ITEMS": 5}
    assert bulk(api, "post", "products", batch("A", 3)).status_code == 200
    clock[0] += 10

    response = bulk(api, "post", "products", batch("B", 3))

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "50"
    assert "throttled" in response.json()["detail"]
    assert len(skus()) == 3
    assert bulk(api, "post", "products", batch("C", 2)).status_code == 200  # 5 in the minute


def test_the_window_slides(api, tools, settings, clock):
    settings.BULKOPS = {"THROTTLE_ITEMS": 5}
    assert bulk(api, "post", "products", batch("A", 5)).status_code == 200
    clock[0] += 59
    assert bulk(api, "post", "products", batch("B", 1)).status_code == 429
    clock[0] += 2
    assert bulk(api, "post", "products", batch("B", 5)).status_code == 200


def test_a_batch_larger_than_the_limit_is_told_to_shrink(api, tools, settings):
    settings.BULKOPS = {"THROTTLE_ITEMS": 5}

    response = bulk(api, "post", "products", batch("A", 6))

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "60"
    assert "at most 5 items per minute" in response.json()["detail"]
    assert skus() == []


def test_every_bulk_method_counts(api, products, settings):
    settings.BULKOPS = {"THROTTLE_ITEMS": 3}
    assert (
        bulk(api, "patch", "products", {"items": [{"sku": "E-0"}, {"sku": "E-1"}]}).status_code
        == 200
    )
    assert bulk(api, "delete", "products", {"items": [{"sku": "E-0"}]}).status_code == 200
    assert bulk(api, "put", "products", {"items": [new_product("E-1")]}).status_code == 429


def test_users_are_counted_apart(api, tools, settings, make_user, client_for):
    settings.BULKOPS = {"THROTTLE_ITEMS": 3}
    assert bulk(api, "post", "products", batch("A", 3)).status_code == 200
    other = client_for(make_user(superuser=True))
    assert bulk(other, "post", "products", batch("B", 3)).status_code == 200
    assert bulk(api, "post", "products", batch("C", 1)).status_code == 429


def test_off_by_default(api, tools):
    for n in range(3):
        assert bulk(api, "post", "products", batch(f"A{n}", 400)).status_code == 200


def test_single_endpoints_are_not_item_throttled(api, tools, settings):
    settings.BULKOPS = {"THROTTLE_ITEMS": 1}
    assert bulk(api, "post", "products", batch("A", 1)).status_code == 200
    assert api.post("/api/products/", new_product("B"), format="json").status_code == 201
