"""Idempotency-Key on the batch (replays the whole response) and on its requests (the
views' own rules, shared with direct calls)."""

import pytest

from bulkops.models import IdempotencyRecord
from project.catalog.models import Customer, Product
from tests.batch.conftest import send

pytestmark = pytest.mark.django_db


def batch(customer):
    return {
        "requests": [
            {"id": "c", "method": "POST", "url": "/api/customers/", "body": customer()},
            {"id": "bad", "method": "POST", "url": "/api/categories/", "body": {"name": ""}},
        ]
    }


def test_a_retried_batch_replays_the_first_response(api, customer):
    first = send(api, batch(customer), HTTP_IDEMPOTENCY_KEY="b-1")

    again = send(api, batch(customer), HTTP_IDEMPOTENCY_KEY="b-1")

    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.json() == first.json()
    assert Customer.objects.count() == 1  # not created twice (a rerun would be 400, email taken)
    record = IdempotencyRecord.objects.get()
    assert (record.path, record.state) == ("/api/batch/", IdempotencyRecord.DONE)


def test_the_same_key_with_another_batch_is_422(api, customer):
    send(api, batch(customer), HTTP_IDEMPOTENCY_KEY="b-1")

    other = send(api, batch(lambda: customer("bob@example.com")), HTTP_IDEMPOTENCY_KEY="b-1")

    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert not Customer.objects.filter(email="bob@example.com").exists()


def test_a_key_still_in_flight_is_409(api, admin, customer):
    from bulkops.idempotency import fingerprint

    IdempotencyRecord.objects.create(
        user=admin,
        key="b-1",
        fingerprint=fingerprint(method="POST", path="/api/batch/", body=batch(customer)),
        method="POST",
        path="/api/batch/",
    )

    response = send(api, batch(customer), HTTP_IDEMPOTENCY_KEY="b-1")

    assert response.status_code == 409
    assert Customer.objects.count() == 0


def test_an_invalid_envelope_does_not_use_up_the_key(api, customer):
    bad = send(api, {"requests": [{"id": "x"}]}, HTTP_IDEMPOTENCY_KEY="b-1")
    good = send(api, batch(customer), HTTP_IDEMPOTENCY_KEY="b-1")

    assert bad.status_code == 400
    assert good.status_code == 200 and "Idempotent-Replayed" not in good.headers


def test_a_requests_own_key_follows_the_views_rules_across_batches_and_direct_calls(api, tools):
    bulk = {
        "id": "b",
        "method": "POST",
        "url": "/api/products/bulk/",
        "headers": {"Idempotency-Key": "bulk-1"},
        "body": {"items": [{"sku": "K-1", "name": "K", "category": "Tools", "price": "1.00"}]},
    }

    first = send(api, {"requests": [bulk]}).json()["responses"][0]
    again = send(api, {"requests": [bulk]}).json()["responses"][0]
    direct = api.post(
        "/api/products/bulk/", bulk["body"], format="json", HTTP_IDEMPOTENCY_KEY="bulk-1"
    )

    assert first["status"] == 200 and first["headers"] == {}
    assert again["headers"] == {"Idempotent-Replayed": "true"}
    assert again["body"] == first["body"]
    assert direct.headers["Idempotent-Replayed"] == "true"
    assert direct.json() == first["body"]
    assert Product.objects.count() == 1


def test_the_batch_key_is_not_passed_to_its_requests(api, tools):
    bulk = {
        "id": "b",
        "method": "POST",
        "url": "/api/products/bulk/",
        "body": {"items": [{"sku": "K-1", "name": "K", "category": "Tools", "price": "1.00"}]},
    }

    send(api, {"requests": [bulk]}, HTTP_IDEMPOTENCY_KEY="batch-key")

    assert list(IdempotencyRecord.objects.values_list("key", "path")) == [
        ("batch-key", "/api/batch/")
    ]
