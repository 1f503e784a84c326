"""The asynchronous path of the bulk endpoints: when a request becomes a job, the 202,
its limits, Idempotency-Key replays, the per-user queue limit (429), and the views
whose requests must stay synchronous. The jobs are not run here (see test_api_e2e.py)."""

# ruff: noqa: F811 - the fixtures imported from apihelpers are parameters here

import gzip
import json
import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from bulkops.jobs.models import BulkJob, BulkPayload
from tests.jobs.apihelpers import client_for, make_user  # noqa: F401

pytestmark = pytest.mark.django_db

PRODUCTS = "/api/products/bulk/"
MiB = 1024 * 1024


def item(sku, **values):
    return {"sku": sku, "name": f"Product {sku}", "category": "Tools", "price": "1.00", **values}


@pytest.fixture
def user(make_user):
    return make_user("add_product", "change_product", "delete_product")


@pytest.fixture
def api(user, client_for):
    return client_for(user)


def post(client, body, path=PRODUCTS, method="post", **headers):
    send = getattr(client, method)
    return send(path, data=json.dumps(body), content_type="application/json", **headers)


def job_of(response):
    assert response.status_code == 202, response.content
    return BulkJob.objects.get(pk=response.json()["job_id"])


def test_async_true_answers_202_with_the_job_location(api, user):
    response = post(api, {"items": [item("A-1"), item("A-2", _ref="two")], "async": True})
    assert response.status_code == 202
    body = response.json()
    job = BulkJob.objects.get()
    assert body == {
        "job_id": str(job.pk),
        "status": "queued",
        "status_url": f"/api/bulk-jobs/{job.pk}/",
    }
    assert response["Location"] == f"/api/bulk-jobs/{job.pk}/"
    assert "Preference-Applied" not in response
    assert (job.user, job.source, job.status) == (user, "api", "queued")
    assert (job.model, job.mode, job.atomic, job.dry_run) == (
        "catalog.product",
        "create",
        "none",
        False,
    )
    assert job.serializer == "project.catalog.serializers.ProductSerializer"
    assert json.loads(BulkPayload.objects.get(job=job).items) == [
        item("A-1"),
        item("A-2", _ref="two"),
    ]
    # The status URL is the job API's.
    assert api.get(body["status_url"]).json()["status"] == "queued"


def test_prefer_respond_async_answers_202(api):
    response = post(api, {"items": [item("A-1")]}, HTTP_PREFER="wait=10, respond-async")
    job_of(response)
    assert response["Preference-Applied"] == "respond-async"


def test_more_than_async_threshold_items_become_a_job(api, settings):
    settings.BULKOPS = {"ASYNC_THRESHOLD": 3}
    assert post(api, {"items": [item(f"A-{i}") for i in range(3)]}).status_code == 200
    job = job_of(post(api, {"items": [item(f"B-{i}") for i in range(4)]}))
    assert job.total_rows == 4


def test_the_envelope_options_go_to_the_job(api):
    body = {
        "items": [{"sku": "A-1", "name": "renamed"}],
        "atomic": "chunk",
        "chunk_size": 2,
        "dry_run": True,
        "async": True,
    }
    job = job_of(post(api, body, method="patch"))
    assert (job.mode, job.atomic, job.chunk_size, job.dry_run) == ("update", "chunk", 2, True)
    delete = job_of(post(api, {"items": [{"sku": "A-1"}], "async": True}, method="delete"))
    assert delete.mode == "delete"
    upsert = job_of(post(api, {"items": [item("A-1")], "async": True}, method="put"))
    assert upsert.mode == "upsert"


def test_async_requests_need_the_same_permissions(make_user, client_for):
    viewer = client_for(make_user("view_product"))
    assert post(viewer, {"items": [item("A-1")], "async": True}).status_code == 403
    assert (
        client_for().post(PRODUCTS, {"items": [], "async": True}, format="json").status_code == 401
    )
    assert not BulkJob.objects.exists()


def test_a_bad_envelope_is_400_before_any_job(api):
    response = post(api, {"items": [item("A-1")], "async": True, "atomic": "most"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_envelope"
    assert not BulkJob.objects.exists()


# -- limits -----------------------------------------------------------------------------


def test_async_requests_may_carry_up_to_max_async_items(api, settings):
    settings.BULKOPS = {"MAX_ITEMS": 2, "ASYNC_THRESHOLD": 2, "MAX_ASYNC_ITEMS": 5}
    assert job_of(post(api, {"items": [item(f"A-{i}") for i in range(5)]})).total_rows == 5
    response = post(api, {"items": [item(f"B-{i}") for i in range(6)]})
    assert response.status_code == 413
    assert response.json() == {
        "error": "batch_too_large",
        "message": "Maximum 5 items per batch; received 6",
        "limit": 5,
        "received": 6,
    }
    assert BulkJob.objects.count() == 1


def test_a_synchronous_request_keeps_max_bytes_an_asynchronous_one_max_async_bytes(api, settings):
    settings.BULKOPS = {"MAX_BYTES": 1000, "MAX_ASYNC_BYTES": 4000}
    body = {"items": [item("A-1", name="x" * 1500)]}
    size = len(json.dumps(body))
    response = post(api, body)
    assert response.status_code == 413
    assert response.json() == {
        "error": "batch_too_large",
        "message": f"Maximum 1000 bytes per batch; received {size}",
        "limit": 1000,
        "received": size,
    }
    job_of(post(api, {**body, "async": True}))
    too_big = post(api, {"items": [item("A-1", name="x" * 5000)], "async": True})
    assert too_big.status_code == 413
    assert too_big.json()["limit"] == 4000


def test_more_than_max_items_below_the_threshold_stay_413(api, settings):
    settings.BULKOPS = {"MAX_ITEMS": 2, "ASYNC_THRESHOLD": 10}
    response = post(api, {"items": [item(f"A-{i}") for i in range(3)]})
    assert response.status_code == 413
    assert response.json()["message"] == "Maximum 2 items per batch; received 3"


# -- idempotency ------------------------------------------------------------------------


def test_an_idempotency_key_replays_the_same_202_and_job(api):
    body = {"items": [item("A-1")], "async": True}
    first = post(api, body, HTTP_IDEMPOTENCY_KEY="k-1")
    again = post(api, body, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true"
    assert BulkJob.objects.count() == 1
    other = post(api, {"items": [item("A-2")], "async": True}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert BulkJob.objects.count() == 1


def test_the_same_key_and_payload_find_the_job_after_the_stored_response_expired(api):
    from bulkops.models import IdempotencyRecord

    body = {"items": [item("A-1")], "async": True}
    first = post(api, body, HTTP_IDEMPOTENCY_KEY="k-2")
    IdempotencyRecord.objects.all().delete()  # expired, or lost with a crashed request
    again = post(api, body, HTTP_IDEMPOTENCY_KEY="k-2")
    assert again.json()["job_id"] == first.json()["job_id"]
    assert BulkJob.objects.count() == 1


def test_keys_of_different_users_are_apart(api, make_user, client_for):
    body = {"items": [item("A-1")], "async": True}
    first = post(api, body, HTTP_IDEMPOTENCY_KEY="shared")
    second = post(client_for(make_user("add_product")), body, HTTP_IDEMPOTENCY_KEY="shared")
    assert first.json()["job_id"] != second.json()["job_id"]


def test_item_idempotency_keys_are_refused_on_async_requests(api):
    body = {"items": [item("A-1"), item("A-2", _idempotency_key="x")], "async": True}
    response = post(api, body)
    assert response.status_code == 400
    assert response.json()["message"].startswith(
        "items[1] has an _idempotency_key: item keys are applied by synchronous requests only"
    )
    assert not BulkJob.objects.exists()


def test_an_item_with_a_bad_ref_is_refused_on_async_requests(api):
    response = post(api, {"items": [item("A-1", _ref=5)], "async": True})
    assert response.status_code == 400
    assert response.json()["message"] == (
        "items[0] cannot be queued: _ref: Must be a string of at most 255 characters."
    )


# -- the per-user queue -----------------------------------------------------------------


def test_beyond_max_queued_jobs_per_user_is_429_with_retry_after(
    api, settings, make_user, client_for
):
    settings.BULKOPS = {"MAX_QUEUED_JOBS_PER_USER": 2}
    body = {"items": [item("A-1")], "async": True}
    job_of(post(api, body))
    job_of(post(api, body))
    response = post(api, body)
    assert response.status_code == 429
    assert response["Retry-After"] == "30"
    assert response.json() == {
        "error": "too_many_jobs",
        "message": "You already have 2 jobs waiting to run, the most allowed; "
        "try again when one of them has started.",
        "limit": 2,
        "retry_after": 30,
    }
    assert BulkJob.objects.count() == 2
    # A 429 is not stored: the same key goes through once a slot is free.
    assert post(api, body, HTTP_IDEMPOTENCY_KEY="later").status_code == 429
    BulkJob.objects.update(status=BulkJob.RUNNING)
    assert post(api, body, HTTP_IDEMPOTENCY_KEY="later").status_code == 202
    # Other users have queues of their own; a synchronous request is never refused.
    job_of(post(client_for(make_user("add_product")), body))
    assert post(api, {"items": [item("S-1")]}).status_code == 200


# -- views whose requests stay synchronous ----------------------------------------------


@pytest.mark.urls("tests.jobs.asyncviews")
@pytest.mark.parametrize(
    ("path", "method", "reason"),
    [
        ("hooked", "post", "its view overrides perform_bulk_create"),
        ("active", "patch", "its view limits which objects may be changed"),
        ("sync", "post", "this resource runs bulk requests synchronously only"),
        ("local", "post", "cannot be imported by a worker"),
    ],
)
def test_views_a_job_cannot_reproduce_refuse_async(api, tools, path, method, reason):
    url = f"/api/{path}/bulk/"
    response = post(api, {"items": [item("A-1")], "async": True}, path=url, method=method)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_envelope"
    assert reason in response.json()["message"]
    # A preference is not applied: the request runs synchronously.
    sync = post(api, {"items": [item("A-2")]}, path=url, method=method, HTTP_PREFER="respond-async")
    assert sync.status_code == 200
    assert "Preference-Applied" not in sync
    assert not BulkJob.objects.exists()


@pytest.mark.urls("tests.jobs.asyncviews")
def test_a_narrowed_queryset_still_creates_asynchronously(api):
    job_of(post(api, {"items": [item("A-1")], "async": True}, path="/api/active/bulk/"))


def test_a_batch_sub_request_may_run_as_a_job(api, tools):
    body = {
        "requests": [
            {
                "id": "p",
                "method": "POST",
                "url": PRODUCTS,
                "headers": {"Prefer": "respond-async", "Idempotency-Key": "in-batch"},
                "body": {"items": [item("A-1")]},
            }
        ]
    }
    first = api.post("/api/batch/", data=json.dumps(body), content_type="application/json")
    again = api.post("/api/batch/", data=json.dumps(body), content_type="application/json")
    answer = first.json()["responses"][0]
    job = BulkJob.objects.get()
    assert answer["status"] == 202
    assert answer["body"]["job_id"] == str(job.pk)
    assert answer["headers"]["Location"] == f"/api/bulk-jobs/{job.pk}/"
    replayed = again.json()["responses"][0]
    assert replayed["body"] == answer["body"]
    assert replayed["headers"]["Idempotent-Replayed"] == "true"


@pytest.mark.django_db(transaction=True)
def test_concurrent_async_requests_with_one_key_start_one_job(user):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent requests need PostgreSQL (SQLite serialises its writers)")
    barrier = threading.Barrier(4)
    codes: list[int] = []
    bodies: list[dict] = []

    def racer():
        client = APIClient()
        client.force_authenticate(user)
        try:
            barrier.wait(5)
            response = post(
                client, {"items": [item("R-1")], "async": True}, HTTP_IDEMPOTENCY_KEY="race"
            )
            codes.append(response.status_code)
            if response.status_code == 202:
                bodies.append(response.json())
        finally:
            connection.close()

    threads = [threading.Thread(target=racer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert len(codes) == 4 and set(codes) <= {202, 409} and 202 in codes
    assert BulkJob.objects.count() == 1
    assert {body["job_id"] for body in bodies} == {str(BulkJob.objects.get().pk)}


@pytest.mark.urls("tests.jobs.asyncviews")
def test_a_view_that_cannot_run_jobs_reads_no_further_than_max_bytes(api, settings):
    settings.BULKOPS = {"MAX_BYTES": 1000, "MAX_ASYNC_BYTES": 100_000}
    body = gzip.compress(json.dumps({"items": [item("A-1", name="x" * 50_000)]}).encode())
    for path, limit in (("/api/sync/bulk/", 1000), ("/api/hooked/bulk/", 1000)):
        response = api.post(
            path, data=body, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
        )
        assert response.status_code == 413
        assert response.json()["limit"] == limit
        assert response.json()["received"] == limit + 1
