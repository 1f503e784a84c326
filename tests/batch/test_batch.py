"""Running a batch: real views, references, failed dependencies, atomic rollback, 500s."""

import pytest
from django.db import IntegrityError, connection

from project.catalog.models import Category, Customer, Order, Product
from project.catalog.views import CategoryViewSet, CustomerViewSet
from tests.batch.conftest import by_id, send

pytestmark = pytest.mark.django_db

PLACED = "2024-05-01T12:00:00Z"


def order(customer="{c.body.email}", product="E-1", quantity=2, **values):
    return {"customer": customer, "product": product, "quantity": quantity, "placed_at": PLACED}


def test_a_customer_and_an_order_for_it(api, products, customer):
    response = send(
        api,
        {
            "requests": [
                {"id": "c", "method": "POST", "url": "/api/customers/", "body": customer()},
                {
                    "id": "o",
                    "method": "POST",
                    "url": "/api/orders/",
                    "depends_on": ["c"],
                    "body": order(),
                },
                {
                    "id": "g",
                    "method": "GET",
                    "url": "/api/customers/{c.body.id}/",
                    "depends_on": ["c"],
                },
            ]
        },
    )

    assert response.status_code == 200
    c, o, g = response.json()["responses"]
    created = Customer.objects.get()
    assert c == {
        "id": "c",
        "status": 201,
        "body": {"id": created.pk, "email": "ann@example.com", "name": "Ann", "country": "DE"},
        "headers": {},
    }
    assert o["id"] == "o" and o["status"] == 201
    assert o["body"]["customer"] == "ann@example.com"
    assert Order.objects.get().customer == created
    assert g["status"] == 200 and g["body"] == c["body"]


def test_a_whole_string_reference_keeps_its_json_type(api, products, customer):
    response = send(
        api,
        {
            "requests": [
                {"id": "p", "method": "GET", "url": "/api/products/"},
                {
                    "id": "c",
                    "method": "PATCH",
                    "url": "/api/products/{p.body.results.1.id}/",
                    "depends_on": ["p"],
                    # a number taken as a number: the serializer would refuse "3" for a bool
                    "body": {"quantity": "{p.body.count}", "active": "{p.body.results.0.active}"},
                },
            ]
        },
    )

    p, c = response.json()["responses"]
    assert c["status"] == 200, c
    assert c["body"]["quantity"] == 5 == p["body"]["count"]
    assert Product.objects.get(sku="E-1").quantity == 5


def test_a_failed_dependency_is_424_and_does_not_run(api, products, customer):
    response = send(
        api,
        {
            "requests": [
                {
                    "id": "c",
                    "method": "POST",
                    "url": "/api/customers/",
                    "body": customer(country="x"),
                },
                {
                    "id": "o",
                    "method": "POST",
                    "url": "/api/orders/",
                    "depends_on": ["c"],
                    "body": order(),
                },
                # through o: depends on a request that was not run
                {"id": "g", "method": "GET", "url": "/api/orders/", "depends_on": ["o"]},
                {
                    "id": "free",
                    "method": "POST",
                    "url": "/api/categories/",
                    "body": {"name": "Free"},
                },
            ]
        },
    )

    c, o, g, free = response.json()["responses"]
    assert c["status"] == 400 and "country" in c["body"]
    assert o == {
        "id": "o",
        "status": 424,
        "body": {
            "error": "dependency_failed",
            "message": "Not run: it depends on 'c', which failed with status 400.",
        },
        "headers": {},
    }
    assert (
        g["status"] == 424
        and "depends on 'o', which failed with status 424" in g["body"]["message"]
    )
    assert free["status"] == 201
    assert Order.objects.count() == 0 and Customer.objects.count() == 0
    assert Category.objects.filter(name="Free").exists()


def test_a_reference_to_a_missing_value_is_424_and_does_not_run(api, products, customer):
    response = send(
        api,
        {
            "requests": [
                {"id": "c", "method": "POST", "url": "/api/customers/", "body": customer()},
                {
                    "id": "o",
                    "method": "POST",
                    "url": "/api/orders/",
                    "depends_on": ["c"],
                    "body": order(customer="{c.body.mail}"),
                },
            ]
        },
    )

    o = by_id(response)["o"]
    assert o["status"] == 424
    assert o["body"]["error"] == "unresolved_reference"
    assert o["body"]["message"] == (
        "The reference {c.body.mail} has no value: c.body has no member 'mail'. Not run."
    )
    assert Order.objects.count() == 0


def test_a_url_made_from_references_is_checked_again(api, make_user, client_for):
    Category.objects.create(name="..")  # its name makes a ".." segment: refused, not run
    Category.objects.create(name="a/b")  # "a%2Fb": two segments to the resolver, no route
    Category.objects.create(name="batch")  # makes /api/batch/: never nested
    response = send(
        api,
        {
            "requests": [
                {"id": "l", "method": "GET", "url": "/api/categories/"},
                {
                    "id": "up",
                    "method": "GET",
                    "url": "/api/categories/{l.body.results.0.name}/",
                    "depends_on": ["l"],
                },
                {
                    "id": "dot",
                    "method": "GET",
                    "url": "/api/categories/{l.body.results.1.name}/",
                    "depends_on": ["l"],
                },
                {
                    "id": "nested",
                    "method": "POST",
                    "url": "/api/{l.body.results.2.name}/",
                    "depends_on": ["l"],
                    "body": {"requests": []},
                },
            ]
        },
    )

    up, dot, nested = (by_id(response)[name] for name in ("up", "dot", "nested"))
    assert nested["status"] == 424 and "batches cannot be nested" in nested["body"]["message"]
    assert up["status"] == 424
    assert (
        "'/api/categories/../', made from its references, must not have '.' or '..'"
        in (up["body"]["message"])
    )
    assert dot["status"] == 424 and "does not match any API view" in dot["body"]["message"]


def test_responses_are_in_request_order_whatever_the_run_order(api, customer):
    response = send(
        api,
        {
            "requests": [
                {
                    "id": "second",
                    "method": "GET",
                    "url": "/api/customers/{first.body.id}/",
                    "depends_on": ["first"],
                },
                {"id": "first", "method": "POST", "url": "/api/customers/", "body": customer()},
            ]
        },
    )

    assert [(r["id"], r["status"]) for r in response.json()["responses"]] == [
        ("second", 200),
        ("first", 201),
    ]


def test_atomic_rolls_every_write_back_when_one_fails(api, products, customer):
    before = list(Product.objects.values_list("sku", "quantity"))
    response = send(
        api,
        {
            "atomic": True,
            "requests": [
                {"id": "c", "method": "POST", "url": "/api/customers/", "body": customer()},
                {
                    "id": "p",
                    "method": "PATCH",
                    "url": f"/api/products/{products[0].pk}/",
                    "body": {"quantity": 99},
                },
                {
                    "id": "o",
                    "method": "POST",
                    "url": "/api/orders/",
                    "depends_on": ["c"],
                    "body": order(),
                },
                {"id": "bad", "method": "POST", "url": "/api/categories/", "body": {"name": ""}},
                {
                    "id": "later",
                    "method": "POST",
                    "url": "/api/categories/",
                    "body": {"name": "Later"},
                },
            ],
        },
    )

    responses = by_id(response)
    assert [r["status"] for r in response.json()["responses"]] == [201, 200, 201, 400, 424]
    assert all(r["rolled_back"] is True for r in responses.values())
    assert responses["later"]["body"] == {
        "error": "batch_rolled_back",
        "message": "Not run: 'bad' failed with status 400, so the atomic batch stopped and "
        "rolled every write back.",
    }
    # The database really is as before.
    assert Customer.objects.count() == 0 and Order.objects.count() == 0
    assert not Category.objects.exclude(name="Tools").exists()
    assert list(Product.objects.values_list("sku", "quantity")) == before


def test_atomic_commits_when_every_request_succeeds(api, products, customer):
    response = send(
        api,
        {
            "atomic": True,
            "requests": [
                {"id": "c", "method": "POST", "url": "/api/customers/", "body": customer()},
                {
                    "id": "o",
                    "method": "POST",
                    "url": "/api/orders/",
                    "depends_on": ["c"],
                    "body": order(),
                },
            ],
        },
    )

    assert [(r["status"], r["rolled_back"]) for r in response.json()["responses"]] == [
        (201, False),
        (201, False),
    ]
    assert Order.objects.get().customer.email == "ann@example.com"


def test_a_non_atomic_batch_has_no_rolled_back_flags(api, customer):
    response = send(
        api,
        {"requests": [{"id": "c", "method": "POST", "url": "/api/customers/", "body": customer()}]},
    )

    assert "rolled_back" not in response.json()["responses"][0]


def test_a_view_that_raises_is_that_requests_500(api, customer, monkeypatch, caplog):
    def broken(self, request, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(CategoryViewSet, "list", broken)
    response = send(
        api,
        {
            "requests": [
                {"id": "boom", "method": "GET", "url": "/api/categories/"},
                {"id": "c", "method": "POST", "url": "/api/customers/", "body": customer()},
                {"id": "after", "method": "GET", "url": "/api/customers/", "depends_on": ["boom"]},
            ]
        },
    )

    assert response.status_code == 200
    boom, c, after = response.json()["responses"]
    assert boom["status"] == 500
    assert boom["body"]["error"] == "server_error"
    assert "RuntimeError" in boom["body"]["message"] and "boom" not in boom["body"]["message"]
    assert c["status"] == 201 and Customer.objects.count() == 1
    assert after["status"] == 424
    assert any("Internal Server Error: /api/categories/" in r.getMessage() for r in caplog.records)


def test_a_database_error_in_one_view_leaves_the_others_usable(api, customer, monkeypatch):
    # Inside an open transaction (this test's) a failed statement would break every
    # later query on PostgreSQL: each request runs in a savepoint of it.
    def failing(self, serializer):
        Customer.objects.create(email="dup@example.com", name="A", country="DE")
        Customer.objects.create(email="dup@example.com", name="B", country="DE")

    monkeypatch.setattr(CustomerViewSet, "perform_create", failing)
    response = send(
        api,
        {
            "requests": [
                {"id": "c", "method": "POST", "url": "/api/customers/", "body": customer()},
                {"id": "t", "method": "POST", "url": "/api/categories/", "body": {"name": "T"}},
            ]
        },
    )

    c, t = response.json()["responses"]
    assert c["status"] == 500
    assert t["status"] == 201
    assert not Customer.objects.exists()  # the failed request's first write was undone
    assert Category.objects.filter(name="T").exists()


def test_in_an_atomic_batch_a_500_rolls_back_too(api, customer, monkeypatch):
    def failing(self, serializer):
        raise IntegrityError("late")

    monkeypatch.setattr(CustomerViewSet, "perform_create", failing)
    response = send(
        api,
        {
            "atomic": True,
            "requests": [
                {"id": "t", "method": "POST", "url": "/api/categories/", "body": {"name": "T"}},
                {"id": "c", "method": "POST", "url": "/api/customers/", "body": customer()},
            ],
        },
    )

    assert [(r["status"], r["rolled_back"]) for r in response.json()["responses"]] == [
        (201, True),
        (500, True),
    ]
    assert not Category.objects.filter(name="T").exists()


def test_a_bulk_endpoint_inside_a_batch(api, tools):
    items = [
        {"sku": "B-1", "name": "One", "category": "Tools", "price": "1.00"},
        {"sku": "B-2", "name": "Two", "category": "Tools", "price": "-1"},
    ]
    response = send(
        api,
        {
            "requests": [
                {
                    "id": "b",
                    "method": "POST",
                    "url": "/api/products/bulk/",
                    "body": {"items": items},
                },
                {
                    "id": "g",
                    "method": "GET",
                    "url": "/api/products/{b.body.results.0.id}/",
                    "depends_on": ["b"],
                },
            ]
        },
    )

    b, g = response.json()["responses"]
    assert b["status"] == 200
    assert b["body"]["status"] == "partial"
    assert b["body"]["summary"]["created"] == 1
    assert b["body"]["results"][1]["errors"] == {
        "price": ["Ensure this value is greater than or equal to 0."]
    }
    assert g["status"] == 200 and g["body"]["sku"] == "B-1"
    assert list(Product.objects.values_list("sku", flat=True)) == ["B-1"]


def test_a_bulk_envelope_error_inside_a_batch_is_that_requests_400(api, tools):
    response = send(
        api,
        {
            "requests": [
                {"id": "b", "method": "POST", "url": "/api/products/bulk/", "body": {"rows": []}},
                {"id": "t", "method": "POST", "url": "/api/categories/", "body": {"name": "T"}},
            ]
        },
    )

    b, t = response.json()["responses"]
    assert b["status"] == 400 and b["body"]["error"] == "invalid_envelope"
    assert t["status"] == 201


def test_a_query_string_reaches_the_view(api, products):
    response = send(
        api, {"requests": [{"id": "l", "method": "GET", "url": "/api/products/?page=2"}]}
    )

    assert response.json()["responses"][0]["status"] == 404  # 5 products, one page


def test_method_not_allowed_and_not_found_are_the_views_answers(api, products):
    response = send(
        api,
        {
            "requests": [
                {
                    "id": "m",
                    "method": "POST",
                    "url": f"/api/products/{products[0].pk}/",
                    "body": {},
                },
                {"id": "n", "method": "GET", "url": "/api/products/999999/"},
                {"id": "d", "method": "DELETE", "url": f"/api/products/{products[0].pk}/"},
            ]
        },
    )

    m, n, d = response.json()["responses"]
    assert m["status"] == 405 and m["body"] == {"detail": 'Method "POST" not allowed.'}
    assert n["status"] == 404
    assert d == {"id": "d", "status": 204, "body": None, "headers": {}}
    assert not Product.objects.filter(pk=products[0].pk).exists()


@pytest.mark.parametrize("atomic_requests", [False, True])
def test_a_requests_transaction_is_the_one_a_direct_call_gets(
    api, monkeypatch, category_writes_then_refuses, atomic_requests
):
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", atomic_requests)

    direct = api.post("/api/categories/", {"name": "Direct"}, format="json")
    batch = send(
        api,
        {
            "requests": [
                {"id": "b", "method": "POST", "url": "/api/categories/", "body": {"name": "Batch"}}
            ]
        },
    )

    assert direct.status_code == batch.json()["responses"][0]["status"] == 400
    kept = set(Category.objects.values_list("name", flat=True))
    assert kept == (set() if atomic_requests else {"Direct", "Batch"})


def test_a_request_sees_its_own_headers_and_the_callers_credentials(api, monkeypatch):
    from rest_framework.response import Response

    def echo(self, request, *args, **kwargs):
        names = ("Prefer", "If-Match", "Idempotency-Key", "Accept", "X-Trace")
        return Response({name: request.headers.get(name) for name in names})

    monkeypatch.setattr(CategoryViewSet, "list", echo)
    response = send(
        api,
        {
            "requests": [
                {
                    "id": "h",
                    "method": "GET",
                    "url": "/api/categories/",
                    "headers": {"prefer": "respond-async", "If-Match": '"v1"'},
                },
                {"id": "plain", "method": "GET", "url": "/api/categories/"},
            ]
        },
        HTTP_IDEMPOTENCY_KEY="batch-key",
        HTTP_PREFER="return=minimal",
        HTTP_ACCEPT="*/*",
        HTTP_X_TRACE="t-1",
    )

    h, plain = response.json()["responses"]
    assert h["body"] == {
        "Prefer": "respond-async",
        "If-Match": '"v1"',
        "Idempotency-Key": None,  # the batch's key is the batch's
        "Accept": "application/json",
        "X-Trace": "t-1",  # the caller's other headers pass through
    }
    assert plain["body"]["Prefer"] is None and plain["body"]["X-Trace"] == "t-1"


def test_only_the_selected_response_headers_are_passed_on(api, monkeypatch):
    from rest_framework.response import Response

    def answer(self, request, *args, **kwargs):
        headers = {"Location": "/api/categories/7/", "Retry-After": "5", "X-Internal": "no"}
        return Response({"ok": True}, status=202, headers=headers)

    monkeypatch.setattr(CategoryViewSet, "list", answer)

    response = send(api, {"requests": [{"id": "a", "method": "GET", "url": "/api/categories/"}]})

    assert response.json()["responses"][0] == {
        "id": "a",
        "status": 202,
        "body": {"ok": True},
        "headers": {"Location": "/api/categories/7/", "Retry-After": "5"},
    }


@pytest.mark.parametrize("value", [0, -1, 1.5, "4", True, None])
def test_a_bad_batch_concurrency_setting_says_how_to_fix_it(value):
    from django.core.exceptions import ImproperlyConfigured

    from bulkops.batch.execution import batch_concurrency

    with pytest.raises(ImproperlyConfigured, match="must be a whole number of at least 1"):
        batch_concurrency(value)
