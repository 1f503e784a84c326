"""BulkItemThrottle: THROTTLE_ITEMS items per user per minute, 429 with Retry-After."""

import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command

from bulkops.checks import check_throttle_store
from bulkops.throttling import BulkItemThrottle
from tests.api.conftest import LIVE_BULKOPS
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


def test_without_redis_the_throttle_still_counts_in_this_process(api, tools, settings, clock):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.BULKOPS = {"THROTTLE_ITEMS": 5}
    assert bulk(api, "post", "products", batch("A", 3)).status_code == 200
    assert bulk(api, "post", "products", batch("B", 3)).status_code == 429
    assert len(skus()) == 3


# -- the start-up check ------------------------------------------------------------------


def test_the_system_check_says_when_items_would_be_counted_per_process(settings):
    settings.BULKOPS = {"THROTTLE_ITEMS": 100}
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    messages = check_throttle_store()

    assert [m.id for m in messages] == ["bulkops.W002"]
    assert "does not answer" in messages[0].msg
    assert "the limit does not hold across processes" in messages[0].msg
    assert "REDIS_URL" in messages[0].hint
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    assert [m.id for m in check_throttle_store()] == ["bulkops.W001"]


@pytest.mark.usefixtures("need_redis")
def test_the_system_check_is_quiet_with_redis_or_without_a_limit(settings):
    settings.BULKOPS = {"THROTTLE_ITEMS": 100}
    assert check_throttle_store() == []
    settings.BULKOPS = {}
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert check_throttle_store() == []


def test_the_check_runs_with_manage_py_check(settings):
    settings.BULKOPS = {"THROTTLE_ITEMS": 100}
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    out = io.StringIO()
    call_command("check", stdout=out, stderr=out)
    assert "bulkops.W002" in out.getvalue()


# -- several processes at once, through a real server -----------------------------------


def _send_batch(live, barrier, prefix: str) -> tuple[int, dict]:
    body = json.dumps(batch(prefix, 50)).encode()
    headers = {**live.auth, "Content-Type": "application/json"}
    barrier.wait(30)
    status, response_headers, _ = live.request("POST", "/api/products/bulk/", body, headers)
    return status, response_headers


def test_concurrent_requests_on_several_server_processes_never_pass_the_limit(
    live, tools, need_redis
):
    """16 requests of 50 items at once against THROTTLE_ITEMS 300 on three gunicorn
    workers: exactly six get through, whichever workers serve them."""
    assert LIVE_BULKOPS["THROTTLE_ITEMS"] == 300
    barrier = threading.Barrier(16)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda n: _send_batch(live, barrier, f"L{n}"), range(16)))

    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 6 + [429] * 10, live.log_tail()
    assert all(0 < int(headers["Retry-After"]) <= 60 for s, headers in answers if s == 429)
    assert len(skus()) == 300
