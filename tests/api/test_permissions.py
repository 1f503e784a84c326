"""The permission table of CONTRACT §3, row by row: who may send which bulk request."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from project.catalog.models import Product
from tests.api.helpers import bulk, new_product

pytestmark = pytest.mark.django_db

REQUESTS = {
    "post": ([new_product("NEW")], ["add_product"]),
    "patch": ([{"sku": "E-0", "price": "2.00"}], ["change_product"]),
    "put": (
        [new_product("E-0", price="3.00"), new_product("NEW")],
        ["add_product", "change_product"],
    ),
    "delete": ([{"sku": "E-0"}], ["delete_product"]),
}
ALL_PERMS = ["add_product", "change_product", "delete_product", "view_product"]


def snapshot():
    return sorted(Product.objects.values_list("sku", "price"))


def other_perms(needed: list[str]) -> list[str]:
    return [p for p in ALL_PERMS if p not in needed]


@pytest.mark.parametrize("method", REQUESTS)
@pytest.mark.parametrize("who", ["anonymous", "staff without the permission"])
def test_refused_requests_are_401_or_403_and_write_nothing(
    method, who, make_user, client_for, products
):
    items, needed = REQUESTS[method]
    user = None if who == "anonymous" else make_user(*other_perms(needed))
    before = snapshot()

    response = bulk(client_for(user), method, "products", {"items": items})

    if who == "anonymous":
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == "Token"
    else:
        assert response.status_code == 403
    assert "detail" in response.json()
    assert snapshot() == before


@pytest.mark.parametrize("method", REQUESTS)
@pytest.mark.parametrize(
    "who", ["staff with the permission", "user with the permission", "superuser"]
)
def test_permitted_requests_run(method, who, make_user, client_for, products):
    items, needed = REQUESTS[method]
    if who == "superuser":
        user = make_user(superuser=True)
    else:
        user = make_user(*needed, staff=who.startswith("staff"))
    before = snapshot()

    response = bulk(client_for(user), method, "products", {"items": items})

    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert snapshot() != before


@pytest.mark.parametrize("perm", ["add_product", "change_product"])
def test_upsert_needs_add_and_change(perm, make_user, client_for, products):
    before = snapshot()
    response = bulk(client_for(make_user(perm)), "put", "products", {"items": REQUESTS["put"][0]})
    assert response.status_code == 403
    assert snapshot() == before


def test_single_put_still_needs_only_change(make_user, client_for, products):
    client = client_for(make_user("change_product"))
    product = products[0]
    item = new_product(product.sku, price="4.00")
    assert client.put(f"/api/products/{product.pk}/", item, format="json").status_code == 200


def test_permissions_are_per_model(make_user, client_for, products):
    client = client_for(make_user("add_category"))
    assert bulk(client, "post", "products", {"items": [new_product("X")]}).status_code == 403
    assert bulk(client, "post", "categories", {"items": [{"name": "X"}]}).status_code == 200


def test_token_authentication(make_user, products):
    token = Token.objects.create(user=make_user("add_product"))
    client = APIClient()

    response = bulk(
        client,
        "post",
        "products",
        {"items": [new_product("T-1")]},
        HTTP_AUTHORIZATION=f"Token {token.key}",
    )

    assert response.status_code == 200
    assert Product.objects.filter(sku="T-1").exists()
    bad = bulk(client, "post", "products", {"items": []}, HTTP_AUTHORIZATION="Token nope")
    assert bad.status_code == 401  # token auth comes first, so DRF sends its challenge
    assert bad["WWW-Authenticate"] == "Token"


def test_session_authentication_enforces_csrf(make_user, products):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(make_user("add_product"))

    response = bulk(client, "post", "products", {"items": [new_product("C-1")]})

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not Product.objects.filter(sku="C-1").exists()


def test_the_envelope_is_not_read_before_permissions(client_for, products):
    """An anonymous client learns nothing from the envelope check: 401 first."""
    assert bulk(client_for(None), "post", "products", b"not json").status_code == 401
