"""The permission table of CONTRACT §3, row by row: who may send which bulk request."""

from decimal import Decimal

import pytest
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.permissions import (
    BasePermission,
    DjangoModelPermissions,
    DjangoModelPermissionsOrAnonReadOnly,
)
from rest_framework.test import APIClient

from project.catalog.models import Product
from project.catalog.views import ProductViewSet
from tests.api.helpers import bulk, new_product
from tests.factories import ProductFactory

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


# -- any permission class: the upsert needs add and change ------------------------------


class ProductModelPermissions(DjangoModelPermissions):
    """A project's subclass (here adding nothing but its name)."""


class MethodPermissions(BasePermission):
    """A custom class that reads the method: POST add, PUT/PATCH change, DELETE delete."""

    needed = {"POST": "add", "PUT": "change", "PATCH": "change", "DELETE": "delete"}

    def has_permission(self, request, view):
        needed = self.needed.get(request.method)
        return needed is None or request.user.has_perm(f"catalog.{needed}_product")


class ActionPermissions(BasePermission):
    """A custom class that reads the action."""

    needed = {
        "bulk_create": "add",
        "bulk_update": "change",
        "bulk_upsert": "change",
        "bulk_destroy": "delete",
    }

    def has_permission(self, request, view):
        needed = self.needed.get(view.action)
        return needed is None or request.user.has_perm(f"catalog.{needed}_product")


UPSERT_CLASSES = [
    DjangoModelPermissions,
    ProductModelPermissions,
    DjangoModelPermissionsOrAnonReadOnly,
    MethodPermissions,
    ActionPermissions,
]


@pytest.mark.parametrize("permission_class", UPSERT_CLASSES)
@pytest.mark.parametrize(
    ("perms", "status"),
    [
        (["change_product"], 403),
        (["add_product"], 403),
        (["add_product", "change_product"], 200),
    ],
)
def test_upsert_needs_add_and_change_whatever_the_permission_class(
    permission_class, perms, status, monkeypatch, make_user, client_for, products
):
    monkeypatch.setattr(ProductViewSet, "permission_classes", [permission_class])
    before = snapshot()

    response = bulk(client_for(make_user(*perms)), "put", "products", {"items": REQUESTS["put"][0]})

    assert response.status_code == status, response.content
    if status == 403:
        assert response.json() == {"detail": "You do not have permission to perform this action."}
        assert snapshot() == before
    else:
        assert response.json()["summary"]["created"] == 1
        assert snapshot() != before


@pytest.mark.parametrize("permission_class", UPSERT_CLASSES)
def test_the_other_bulk_actions_still_need_one_permission(
    permission_class, monkeypatch, make_user, client_for, products
):
    monkeypatch.setattr(ProductViewSet, "permission_classes", [permission_class])
    for method, (items, needed) in REQUESTS.items():
        if method == "put":
            continue
        response = bulk(client_for(make_user(*needed)), method, "products", {"items": items})
        assert response.status_code == 200, (method, response.content)


def test_anonymous_upsert_with_anon_read_only_is_401(monkeypatch, client_for, products):
    monkeypatch.setattr(
        ProductViewSet, "permission_classes", [DjangoModelPermissionsOrAnonReadOnly]
    )
    before = snapshot()
    response = bulk(client_for(None), "put", "products", {"items": REQUESTS["put"][0]})
    assert response.status_code == 401
    assert snapshot() == before


# -- object permissions ------------------------------------------------------------------


class LockedProducts(DjangoModelPermissions):
    """Refuses products whose SKU starts with LOCKED, with its own message."""

    message = "This product is locked."

    def has_object_permission(self, request, view, obj):
        return not obj.sku.startswith("LOCKED")


class HiddenProducts(DjangoModelPermissions):
    """Hides products whose SKU starts with HIDDEN, as DjangoObjectPermissions does (404)."""

    def has_object_permission(self, request, view, obj):
        if obj.sku.startswith("HIDDEN"):
            raise Http404
        return True


class QuietRefusal(DjangoModelPermissions):
    """Refuses LOCKED products with DRF's default message."""

    def has_object_permission(self, request, view, obj):
        return not obj.sku.startswith("LOCKED")


@pytest.fixture
def locked(monkeypatch, tools):
    monkeypatch.setattr(ProductViewSet, "permission_classes", [LockedProducts])
    return [
        ProductFactory(sku=sku, category=tools, price=Decimal("10.00"))
        for sku in ("OPEN-1", "LOCKED-1", "OPEN-2", "LOCKED-2")
    ]


def prices() -> dict[str, str]:
    return {sku: str(price) for sku, price in Product.objects.values_list("sku", "price")}


LOCKED_ERROR = {"non_field_errors": ["This product is locked."]}


def test_bulk_patch_refuses_the_objects_the_single_patch_refuses(api, locked):
    single = api.patch(f"/api/products/{locked[1].pk}/", {"price": "2.00"}, format="json")
    assert single.status_code == 403
    assert single.json() == {"detail": "This product is locked."}

    items = [
        {"sku": "OPEN-1", "price": "2.00"},
        {"sku": "LOCKED-1", "price": "2.00"},
        {"id": locked[3].pk, "price": "2.00"},
    ]
    body = bulk(api, "patch", "products", {"items": items}).json()

    assert [r["status"] for r in body["results"]] == ["updated", "error", "error"]
    assert body["results"][1]["errors"] == LOCKED_ERROR
    assert body["results"][2]["errors"] == LOCKED_ERROR
    assert prices() == {
        "OPEN-1": "2.00",
        "LOCKED-1": "10.00",
        "OPEN-2": "10.00",
        "LOCKED-2": "10.00",
    }


def test_bulk_delete_refuses_the_objects_the_single_delete_refuses(api, locked):
    assert api.delete(f"/api/products/{locked[1].pk}/").status_code == 403

    items = [{"sku": "OPEN-1"}, {"sku": "LOCKED-1"}, {"id": locked[3].pk}, {"sku": "OPEN-2"}]
    body = bulk(api, "delete", "products", {"items": items}).json()

    assert [r["status"] for r in body["results"]] == ["deleted", "error", "error", "deleted"]
    assert body["results"][1]["errors"] == LOCKED_ERROR
    assert sorted(prices()) == ["LOCKED-1", "LOCKED-2"]


def test_bulk_upsert_refuses_locked_objects_and_creates_new_ones(api, locked):
    items = [new_product("LOCKED-1", price="3.00"), new_product("NEW-1", price="3.00")]
    body = bulk(api, "put", "products", {"items": items}).json()

    assert [r["status"] for r in body["results"]] == ["error", "created"]
    assert body["results"][0]["errors"] == LOCKED_ERROR
    assert prices()["LOCKED-1"] == "10.00" and prices()["NEW-1"] == "3.00"


def test_a_refused_object_fails_its_chunk_in_atomic_chunk(api, locked):
    items = [{"sku": "OPEN-1", "price": "2.00"}, {"sku": "LOCKED-1", "price": "2.00"}]
    body = bulk(api, "patch", "products", {"items": items, "atomic": "chunk"}).json()
    assert [r["status"] for r in body["results"]] == ["rolled_back", "error"]
    assert prices()["OPEN-1"] == "10.00"


def test_a_hidden_object_is_not_found_and_drf_s_default_message_is_used(api, locked, monkeypatch):
    monkeypatch.setattr(ProductViewSet, "permission_classes", [HiddenProducts])
    ProductFactory(sku="HIDDEN-1", category=locked[0].category)
    body = bulk(api, "patch", "products", {"items": [{"sku": "HIDDEN-1", "price": "1"}]}).json()
    assert body["results"][0]["errors"] == {"non_field_errors": ["Not found."]}

    monkeypatch.setattr(ProductViewSet, "permission_classes", [QuietRefusal])
    body = bulk(api, "delete", "products", {"items": [{"sku": "LOCKED-1"}]}).json()
    assert body["results"][0]["errors"] == {
        "non_field_errors": ["You do not have permission to perform this action."]
    }


def test_object_permissions_cost_no_query_per_item(api, locked, django_assert_num_queries):
    tools = locked[0].category
    ProductFactory.create_batch(40, category=tools)
    skus_all = list(Product.objects.order_by("sku").values_list("sku", flat=True))

    def patch(count):
        items = [{"sku": sku, "quantity": 3} for sku in skus_all[:count]]
        return bulk(api, "patch", "products", {"items": items})

    patch(4)  # warm caches (content types, permissions)
    with CaptureQueriesContext(connection) as few:
        patch(4)
    with django_assert_num_queries(len(few.captured_queries)):
        response = patch(40)
    assert response.json()["summary"]["failed"] == 2  # LOCKED-1 and LOCKED-2
