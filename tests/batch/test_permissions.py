"""Each request of a batch is authenticated and authorised by its own view, as a direct
call with the same credentials would be; the batch request is CSRF-checked once."""

import pytest
from rest_framework.authentication import SessionAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.permissions import BasePermission, DjangoModelPermissions
from rest_framework.test import APIClient

from project.catalog.models import Category, Customer
from project.catalog.views import CustomerViewSet
from tests.batch.conftest import by_id, send
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

CSRF_SECRET = "a" * 32  # a well-formed CSRF secret, sent as cookie and header


def two_creates(customer):
    return {
        "requests": [
            {"id": "c", "method": "POST", "url": "/api/customers/", "body": customer()},
            {"id": "k", "method": "POST", "url": "/api/categories/", "body": {"name": "K"}},
        ]
    }


def test_model_permissions_apply_per_request(make_user, client_for, customer):
    user = make_user("add_customer")

    response = send(client_for(user), two_creates(customer))

    assert response.status_code == 200
    c, k = by_id(response)["c"], by_id(response)["k"]
    assert c["status"] == 201
    assert k["status"] == 403
    assert k["body"] == {"detail": "You do not have permission to perform this action."}
    assert Customer.objects.count() == 1 and Category.objects.count() == 0


def test_token_authentication_reaches_every_request(make_user, customer):
    user = make_user("add_customer", "view_customer")
    token = Token.objects.create(user=user)
    client = APIClient()

    response = send(
        client,
        {
            "requests": [
                {"id": "c", "method": "POST", "url": "/api/customers/", "body": customer()},
                {"id": "l", "method": "GET", "url": "/api/customers/", "depends_on": ["c"]},
            ]
        },
        HTTP_AUTHORIZATION=f"Token {token.key}",
    )

    assert [r["status"] for r in response.json()["responses"]] == [201, 200]
    assert response.json()["responses"][1]["body"]["count"] == 1


def test_a_session_batch_without_a_csrf_token_runs_nothing(make_user, customer):
    user = make_user("add_customer", "add_category")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)

    response = send(client, two_creates(customer))

    assert response.status_code == 403
    assert "CSRF Failed" in response.json()["detail"]
    assert Customer.objects.count() == 0 and Category.objects.count() == 0


def test_a_session_batch_with_a_csrf_token_runs(make_user, customer):
    user = make_user("add_customer", "add_category")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    client.cookies["csrftoken"] = CSRF_SECRET

    response = send(client, two_creates(customer), HTTP_X_CSRFTOKEN=CSRF_SECRET)

    assert [r["status"] for r in response.json()["responses"]] == [201, 201]


def test_a_request_is_authenticated_by_its_views_own_classes(make_user, customer, monkeypatch):
    """Token of a user who may add customers, session of one who may not, and a customer
    view that takes sessions only: the request acts as the session's user, as a direct
    call would, and its CSRF check is its own (the batch, by token, had none)."""
    token_user = make_user("add_customer", "add_category")
    session_user = make_user()
    token = Token.objects.create(user=token_user)
    monkeypatch.setattr(CustomerViewSet, "authentication_classes", [SessionAuthentication])
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(session_user)
    credentials = {"HTTP_AUTHORIZATION": f"Token {token.key}"}

    direct = client.post("/api/customers/", customer(), format="json", **credentials)
    batch = send(client, two_creates(customer), **credentials)

    assert direct.status_code == 403 and "CSRF Failed" in direct.json()["detail"]
    c, k = batch.json()["responses"]
    assert (c["status"], c["body"]) == (direct.status_code, direct.json())
    assert k["status"] == 201  # the categories view takes the token
    assert Customer.objects.count() == 0


def test_object_permissions_apply_per_request(make_user, client_for, monkeypatch):
    class NotSecret(BasePermission):
        def has_object_permission(self, request, view, obj):
            return obj.email != "secret@example.com"

    monkeypatch.setattr(CustomerViewSet, "permission_classes", [DjangoModelPermissions, NotSecret])
    secret = CustomerFactory(email="secret@example.com")
    public = CustomerFactory(email="public@example.com")
    user = make_user("view_customer", "change_customer")

    response = send(
        client_for(user),
        {
            "requests": [
                {"id": "s", "method": "GET", "url": f"/api/customers/{secret.pk}/"},
                {"id": "p", "method": "GET", "url": f"/api/customers/{public.pk}/"},
                {
                    "id": "w",
                    "method": "PATCH",
                    "url": f"/api/customers/{secret.pk}/",
                    "body": {"name": "Changed"},
                },
            ]
        },
    )

    assert [r["status"] for r in response.json()["responses"]] == [403, 200, 403]
    secret.refresh_from_db()
    assert secret.name != "Changed"
