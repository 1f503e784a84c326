"""Failures while writing: answered in JSON, never Django's HTML page; where chunks
committed, the normal 200 body tells every item's fate."""

import logging

import pytest
from django.core.signals import got_request_exception
from django.db import OperationalError

from bulkops.models import IdempotencyRecord
from project.catalog.views import ProductViewSet
from tests.api.helpers import bulk, new_product, skus

pytestmark = pytest.mark.django_db

ITEMS = [new_product(f"F-{i}", _ref=f"r{i}") for i in range(6)]


@pytest.fixture
def fail_third_chunk(monkeypatch):
    """The product viewset's writes fail in their third chunk, inside its transaction
    (as a dropped connection or a deadlock past its retries would)."""
    chunks = []

    def perform_bulk_create(self, *, items, options):
        def after_write(action, objs):
            chunks.append(len(objs))
            if len(chunks) == 3:
                raise OperationalError("server closed the connection unexpectedly")

        return self.run_bulk(mode="create", items=items, options=options, after_write=after_write)

    monkeypatch.setattr(ProductViewSet, "perform_bulk_create", perform_bulk_create)
    return chunks


@pytest.fixture
def quiet_client(api):
    """The test client re-raises what a view reports through got_request_exception;
    here the response is what is under test."""
    api.raise_request_exception = False
    return api


@pytest.mark.parametrize("atomic", ["none", "chunk"])
def test_a_failure_after_commits_is_200_with_every_items_fate(
    quiet_client, tools, fail_third_chunk, atomic, caplog
):
    with caplog.at_level(logging.ERROR, logger="bulkops.rest"):
        response = bulk(
            quiet_client, "post", "products", {"items": ITEMS, "atomic": atomic, "chunk_size": 2}
        )

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "partial"
    assert body["summary"]["created"] == 4 and body["summary"]["failed"] == 2
    assert [r["status"] for r in body["results"]] == ["created"] * 4 + ["error"] * 2
    assert [r["ref"] for r in body["results"]] == [f"r{i}" for i in range(6)]
    message = body["results"][4]["errors"]["non_field_errors"][0]
    assert message.startswith(
        "Not written: the server failed while writing this batch (OperationalError, reference "
    )
    assert message.endswith("); send this item again.")
    assert skus() == ["F-0", "F-1", "F-2", "F-3"]  # the committed chunks, nothing else
    reference = message.split("reference ")[1].split(")")[0]
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info[0] is OperationalError


def test_a_failure_with_nothing_committed_is_a_json_500(quiet_client, tools, fail_third_chunk):
    response = bulk(
        quiet_client, "post", "products", {"items": ITEMS, "atomic": "all", "chunk_size": 2}
    )

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == "server_error"
    assert body["message"] == (
        "The server failed while processing this request; no item was written, so it is "
        f"safe to send again. Reference: {body['reference']}."
    )
    assert skus() == []


def test_the_partial_answer_is_what_the_idempotency_key_replays(
    quiet_client, tools, fail_third_chunk
):
    payload = {"items": ITEMS, "chunk_size": 2}
    first = bulk(quiet_client, "post", "products", payload, HTTP_IDEMPOTENCY_KEY="p-1")
    again = bulk(quiet_client, "post", "products", payload, HTTP_IDEMPOTENCY_KEY="p-1")

    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert len(fail_third_chunk) == 3  # the retry ran nothing
    assert skus() == ["F-0", "F-1", "F-2", "F-3"]


def test_a_json_500_releases_the_idempotency_key(quiet_client, tools, fail_third_chunk):
    payload = {"items": ITEMS, "chunk_size": 2, "atomic": "all"}
    assert (
        bulk(quiet_client, "post", "products", payload, HTTP_IDEMPOTENCY_KEY="p-2").status_code
        == 500
    )
    assert not IdempotencyRecord.objects.exists()


def test_any_unexpected_error_is_json_and_reported(quiet_client, tools, monkeypatch):
    def broken(self, *, items, options):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(ProductViewSet, "perform_bulk_create", broken)
    reported = []

    def receiver(sender, request, **kwargs):
        reported.append(request.path)

    got_request_exception.connect(receiver)
    try:
        response = bulk(quiet_client, "post", "products", {"items": ITEMS})
    finally:
        got_request_exception.disconnect(receiver)

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == "server_error"
    # The engine never ran, so nothing can be said of what was written.
    assert body["message"] == (
        f"The server failed while processing this request. Reference: {body['reference']}."
    )
    assert reported == ["/api/products/bulk/"]


@pytest.mark.parametrize("debug", [False, True])
def test_never_djangos_html_page(client_for, make_user, tools, monkeypatch, settings, debug):
    settings.DEBUG = debug
    monkeypatch.setattr(ProductViewSet, "get_serializer_context", lambda self: 1 / 0)
    client = client_for(make_user(superuser=True))
    client.raise_request_exception = False

    for method in ("post", "patch", "put", "delete"):
        response = bulk(client, method, "products", {"items": [new_product("X")]})
        assert response.status_code == 500
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"] == "server_error"
